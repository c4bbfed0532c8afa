"""The register map is defined once (pytorch_fpga/contract/regmap.py): generated files are current and agree
with it, and no register offset or bit is spelled anywhere else."""
import re
from pathlib import Path

import pytest

from pytorch_fpga.contract import axi_dma, regmap

ROOT = Path(regmap.__file__).resolve().parents[2]


def test_generated_files_are_current():
    assert regmap.stale() == [], "run `make regen`: these generated files are stale"
    for path in regmap.GENERATED:
        assert "do not edit" in path.read_text().splitlines()[0]


def test_a_stale_file_is_found_and_regenerated(tmp_path, monkeypatch):
    fake = tmp_path / "regs.vh"
    fake.write_text("// old\n")
    monkeypatch.setattr(regmap, "GENERATED", {fake: regmap.verilog_header})
    assert regmap.stale() == [fake]
    assert regmap.regen() == [fake] and regmap.stale() == []


def test_the_verilog_header_parses_back_to_the_register_map():
    defs = dict(re.findall(r"`define PFA_REG_(\w+) \d+'h([0-9A-F]+)", regmap.HEADER.read_text()))
    assert {k: int(v, 16) for k, v in defs.items()} == {k: v[0] for k, v in regmap.REGISTERS.items()}
    bits = {k: int(v) for k, v in re.findall(r"`define PFA_(\w+?_\w+) (\d+)  //", regmap.HEADER.read_text())}
    assert bits == {f"{reg}_{name}": lsb for reg, fs in regmap.FIELDS.items() for name, (lsb, _, _) in fs.items()}
    assert 1 << bits["CTRL_SOFT_RESET"] == regmap.CTRL_SOFT_RESET == 2      # the bit conv_accel_regs.v decodes
    assert 1 << bits["STATUS_ERROR"] == regmap.STATUS_ERROR
    assert re.search(r"`define PFA_MAGIC 32'h([0-9A-F]+)", regmap.HEADER.read_text())[1] == f"{regmap.MAGIC:08X}"


def test_the_c_header_parses_back_to_the_register_map():
    text = regmap.C_HEADER.read_text()
    regs = {k: int(v, 16) for k, v in re.findall(r"#define PFA_REG_(\w+) 0x([0-9A-F]+)u", text)}
    assert regs == {k: v[0] for k, v in regmap.REGISTERS.items()}
    flags = {k: 1 << int(v) for k, v in re.findall(r"#define PFA_(\w+) \(1u << (\d+)\)", text)}
    assert flags == {f"{reg}_{name}": 1 << lsb for reg, fs in regmap.FIELDS.items()
                     for name, (lsb, width, _) in fs.items() if width == 1}
    assert flags["CTRL_START"] == regmap.CTRL_START and flags["STATUS_DONE"] == regmap.STATUS_DONE
    assert flags["FLAGS_OUT_INT32"] == regmap.FLAG_OUT_INT32
    assert int(re.search(r"#define PFA_MAGIC 0x([0-9A-F]+)u", text)[1], 16) == regmap.MAGIC


def test_fields_and_decoding():
    assert regmap.field("CONFIG", "COLS", 0x0810) == 8 and regmap.field("CONFIG", "ROWS", 0x0810) == 16
    assert regmap.status_text(regmap.STATUS_IDLE | regmap.STATUS_ERROR) == "IDLE, ERROR"
    assert regmap.status_text(0) == "busy"
    regs = {r["name"]: r for r in regmap.fields()}
    assert set(regs) == set(regmap.REGISTERS) and regs["STATUS"]["offset"] == 4
    assert [f["name"] for f in regs["CTRL"]["fields"]] == ["START", "SOFT_RESET"]
    with pytest.raises(KeyError, match="no register 'STATS'"):
        regmap.offset("STATS")


# Files allowed to spell the contract: the contract itself and the files generated from it.
CONTRACT = {"pytorch_fpga/contract/regmap.py", "pytorch_fpga/contract/axi_dma.py", "rtl/regmap_generated.vh",
            "pytorch_fpga/sim/verilated/regmap_generated.h"}
SOURCES = [p for pat in ("pytorch_fpga/**/*.py", "pytorch_fpga/**/*.cpp", "rtl/*.v", "tb/**/*.py", "tests/*.py")
           for p in ROOT.glob(pat) if str(p.relative_to(ROOT)) not in CONTRACT and p.name != "test_regmap.py"]


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_register_offset_or_status_bit_is_spelled_outside_the_contract(path):
    text = path.read_text()
    bad = []
    # a register or a DMA register read or written with a literal offset
    bad += re.findall(r"(?:read|write)(?:_reg)?\(\s*0x[0-9A-Fa-f]+\s*[,)]", text)
    bad += re.findall(r"(?:offset|\+)\s*(?:0x(?:0|1|2|3)[048C])\b(?=.*(?:DMA|dma|SR|CR))", text)
    # conv_accel's CTRL written with a literal, or STATUS/DMASR tested against bare masks
    bad += re.findall(r"\"CTRL\",\s*\d+", text)
    bad += re.findall(r"(?:STATUS|status|DMASR|sr)\s*&\s*0x[0-9A-Fa-f]+", text)
    bad += re.findall(r"(?:PFA_REG|STATUS_ADDR)\w*\s*=\s*0x", text)
    # the RTL: a register decoded by a literal address, a CTRL bit by a literal index
    bad += re.findall(r"^\s*\d*'h[0-9A-Fa-f]+\s*:", text, re.M)
    bad += re.findall(r"s_axil_wdata\[\d+\]", text)
    assert not bad, f"{path.relative_to(ROOT)} spells the register contract: {bad}; use regmap / axi_dma names"


def test_the_dma_contract_is_used_by_the_driver_and_the_virtual_pynq():
    driver = (ROOT / "pytorch_fpga/runtime/pynq_driver.py").read_text()
    assert "axi_dma." in driver and "_mmio" not in driver and "_offset" not in driver
    assert axi_dma.CHANNELS["S2MM"] == 0x30


def test_the_hwh_describes_the_registers_and_fields_of_the_register_map():
    import xml.etree.ElementTree as ET

    from pytorch_fpga.sim.virtual_pynq import overlay_hwh
    root = ET.fromstring(overlay_hwh("sim8"))
    acc = next(m for m in root.iter("MODULE") if m.get("MODTYPE") == "conv_accel")
    got = {}
    for r in acc.iter("REGISTER"):
        props = {p.get("NAME"): p.get("VALUE") for p in r.findall("PROPERTY")}
        fields = {f.get("NAME"): {p.get("NAME"): p.get("VALUE") for p in f.findall("PROPERTY")}
                  for f in r.iter("FIELD")}
        got[r.get("NAME")] = (int(props["ADDRESS_OFFSET"], 16),
                              {n: (int(v["BIT_OFFSET"]), int(v["BIT_WIDTH"])) for n, v in fields.items()})
    want = {r["name"]: (r["offset"], {f["name"]: (f["lsb"], f["width"]) for f in r["fields"]}) for r in regmap.fields()}
    assert got == want
    assert got["CTRL"][1]["SOFT_RESET"] == (1, 1)
