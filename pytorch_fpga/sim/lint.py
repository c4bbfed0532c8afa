"""Verilator `--lint-only -Wall` over the RTL, at the default parameters and at extra sizes."""
from __future__ import annotations

import re
import subprocess

from pytorch_fpga.sim import tools

# Extra parameter sets linted besides each module's defaults.
EXTRA_PARAMS = {"pe": [{"USE_DSP": 0}],
                "systolic_array": [{"ROWS": 2, "COLS": 2}, {"ROWS": 16, "COLS": 16}, {"ROWS": 3, "COLS": 5},
                                   {"ROWS": 4, "COLS": 4, "LUT_ROWS": 2}],
                "conv_accel": [{"ROWS": 8, "COLS": 8, "LUT_ROWS": 0, "X_DEPTH": 256, "W_DEPTH": 512,
                                "ACC_DEPTH": 64, "N_MAX": 64, "OUT_LANES": 2, "OUT_DEPTH": 256},
                               {"OUT_LANES": 4}, {"DW_CH": 512}],
                "accel_dw": [{"ROWS": 8, "COLS": 8, "LANES": 2, "LB_DEPTH": 256, "CH": 64, "N_MAX": 64, "WA_W": 9},
                             {"LANES": 4}],
                "accel_output": [{"LANES": 2}, {"LANES": 4}, {"COLS": 8, "LANES": 8, "OUT_DEPTH": 256}]}


def modules() -> list[str]:
    """Names of the RTL modules (one module per rtl/<name>.v)."""
    return sorted(p.stem for p in tools.RTL_DIR.glob("*.v"))


def lint(module: str, params: dict | None = None) -> str:
    """Lint one module with -Wall; return Verilator's warnings ('' when clean)."""
    exe = tools.use_verilator()
    cmd = [str(exe), "--lint-only", "-Wall", f"-I{tools.RTL_DIR}", "-y", str(tools.RTL_DIR), "--top-module",
           module, str(tools.RTL_DIR / f"{module}.v")]
    cmd += [f"-G{k}={v}" for k, v in (params or {}).items()]
    p = subprocess.run(cmd, capture_output=True, text=True, env=tools.verilator_env())
    out = "\n".join(ln for ln in (p.stdout + p.stderr).splitlines() if not ln.startswith("- V") and
                    not re.match(r"^- Verilator:", ln))
    return out.strip() if (p.returncode or out.strip()) else ""


def lint_all(verbose: bool = True) -> bool:
    """Lint every module (and its extra parameter sets); print a line each; True when all are clean."""
    ok = True
    for m in modules():
        for params in [{}] + EXTRA_PARAMS.get(m, []):
            msg = lint(m, params)
            label = m + ("" if not params else " " + " ".join(f"{k}={v}" for k, v in params.items()))
            if verbose:
                print(f"lint {label:40s} {'ok' if not msg else 'FAILED'}")
            if msg:
                ok = False
                print(msg)
    return ok
