"""Check a built conv_accel.hwh against pytorch_fpga/contract/design.py (run by `make` after the bitstream).

    python overlays/conv_accel/check_hwh.py [overlays/conv_accel/conv_accel.hwh]

Reads the .hwh the way PYNQ does (the PS's MEMRANGE entries give each IP's phys_addr and addr_range; each
MODULE's PARAMETERS give its configuration) and compares: the accelerator's and the DMA's VLNV, address and
range, the DMA's parameters and the accelerator's Verilog parameters. Exit status 1 and one line per mismatch
if anything differs. Needs only the standard library and pytorch_fpga (no pynq, no board).
"""
from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))     # the repository root, for pytorch_fpga

from pytorch_fpga.contract import design  # noqa: E402


def _int(text: str):
    """An .hwh number ("16", "0x10"); None if it is not one."""
    try:
        return int(text, 16) if text.lower().startswith("0x") else int(text)
    except ValueError:
        return None


def check(hwh_path: str | Path) -> list[str]:
    """Mismatches between the .hwh and design.py (empty: they agree)."""
    root = ET.parse(hwh_path).getroot()
    modules = {m.get("INSTANCE"): m for m in root.iter("MODULE")}
    ps = [m for m in modules.values() if m.get("MODTYPE") == "processing_system7"]
    problems = []
    if len(ps) != 1:
        return [f"expected one processing_system7 module, found {len(ps)}"]
    ranges = {r.get("INSTANCE"): r for r in ps[0].iter("MEMRANGE")}
    for ip in (design.ACCEL_IP, design.DMA_IP):
        name = ip["name"]
        mod = modules.get(name)
        if mod is None:
            problems.append(f"{name}: not in the .hwh")
            continue
        if mod.get("VLNV") != ip["vlnv"]:
            problems.append(f"{name}: VLNV {mod.get('VLNV')} != {ip['vlnv']}")
        r = ranges.get(name)
        if r is None:
            problems.append(f"{name}: no address range seen from the PS")
        else:
            base, high = int(r.get("BASEVALUE"), 16), int(r.get("HIGHVALUE"), 16)
            if (base, high - base + 1) != (ip["phys_addr"], ip["addr_range"]):
                problems.append(f"{name}: at {base:#x} range {high - base + 1:#x}, design.py says "
                                f"{ip['phys_addr']:#x} range {ip['addr_range']:#x}")
        params = {p.get("NAME").lower(): p.get("VALUE") for p in mod.findall("./PARAMETERS/PARAMETER")}
        for key, want in ip["parameters"].items():
            have = params.get(key.lower())
            if have is None or _int(have) != int(want):
                problems.append(f"{name}: parameter {key} = {have}, design.py says {want}")
    return problems


if __name__ == "__main__":
    path = sys.argv[1] if len(sys.argv) > 1 else str(Path(__file__).with_name(f"{design.OVERLAY}.hwh"))
    found = check(path)
    for line in found:
        print(f"MISMATCH {line}")
    print(f"{path}: {'matches' if not found else 'does NOT match'} pytorch_fpga/contract/design.py")
    sys.exit(1 if found else 0)
