"""The RTL manifest: where the Verilog lives and which files make up each top-level design."""
from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
RTL_DIR = REPO_ROOT / "rtl"

# top-level design -> its rtl/ modules (one module per file, <name>.v), top first
DESIGNS = {
    "pe": ["pe"],
    "systolic_array": ["systolic_array", "pe"],
    "conv_accel": ["conv_accel", "conv_accel_regs", "accel_input", "accel_compute", "accel_output", "accel_dw",
                   "dw_dot9", "requant",
                   "sync_fifo", "sdp_ram", "systolic_array", "pe"],
}
# conv_accel's modules (its include file, the generated register header, is found through rtl/)
RTL_MODULES = DESIGNS["conv_accel"]


def modules(design: str) -> list[str]:
    """The rtl/ modules of a top-level design, top first."""
    try:
        return list(DESIGNS[design])
    except KeyError:
        raise ValueError(f"unknown design {design!r}; choose one of {sorted(DESIGNS)}") from None
