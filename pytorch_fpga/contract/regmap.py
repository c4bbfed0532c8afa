"""conv_accel's register map and stream format: defined once, here. Generated from it (`make regen`):
rtl/regmap_generated.vh (the RTL's defines) and pytorch_fpga/sim/verilated/regmap_generated.h (the Verilator
harness's); the virtual PYNQ's .hwh takes its register fields from fields().

Used by the RTL (through the generated header), the cocotb testbench, the Verilator backend, the pynq driver and
the virtual PYNQ. Regenerate the header with `python -m pytorch_fpga.contract.regmap` (a test checks it is current).
"""
from __future__ import annotations

from pathlib import Path

MAGIC = 0x50464131  # "PFA1": ID register value

# AXI4-Lite registers (32-bit, byte offsets). R: read-only, W: write-only pulse, RW: read/write.
REGISTERS = {
    "CTRL":       (0x00, "W",  "bit 0 START: start a job with the dimensions below (ignored while busy); "
                               "bit 1 SOFT_RESET: abort the job, drop the rest of a packet in flight"),
    "STATUS":     (0x04, "R",  "bit 0 IDLE, bit 1 DONE (a job finished since the last START), bit 2 ERROR"),
    "M":          (0x08, "RW", "rows of X (output positions) in the job"),
    "K":          (0x0C, "RW", "reduction length (columns of X, rows of W)"),
    "N":          (0x10, "RW", "output channels (columns of W)"),
    "M_TILE":     (0x14, "RW", "rows of X per on-chip tile (<= ACC_DEPTH, tile rows x k-folds <= X_DEPTH)"),
    "FLAGS":      (0x18, "RW", "bit 0 RELU, bit 1 OUT_INT32 (int32 accumulators + bias instead of int8), "
                               "bit 2 WINDOW (X is an NHWC feature map; the engine forms the windows), "
                               "bit 3 DEPTHWISE (with WINDOW: n-fold j reads channel block j only), "
                               "bit 4 OUT_NHWC (int8 out in NHWC order: each pixel's channels together), "
                               "bit 5 DW_UNIT (depthwise 3x3 in the line-buffer unit: DW_* registers)"),
    "ID":         (0x1C, "R",  "MAGIC"),
    "CONFIG":     (0x20, "R",  "ROWS [7:0], COLS [15:8], OUT_LANES [23:16]"),
    "X_DEPTH":    (0x24, "R",  "X buffer rows (of ROWS bytes) per bank"),
    "W_DEPTH":    (0x28, "R",  "W buffer rows (of COLS bytes)"),
    "ACC_DEPTH":  (0x2C, "R",  "accumulator rows per bank (max M_TILE)"),
    "N_MAX":      (0x30, "R",  "max output channels (parameter memory entries)"),
    "OUT_DEPTH":  (0x34, "R",  "NHWC output buffer rows (8 bytes); a tile's M_TILE * n-folds * COLS / 8 <= half"),
    "DW_CONFIG":  (0x38, "R",  "depthwise unit: LB_DEPTH [15:0] line-buffer beats, CH [31:16] max channels (0: none)"),
    "CYCLES":     (0x40, "R",  "cycles from START to DONE of the last job"),
    "MAC_CYCLES": (0x44, "R",  "cycles the array accepted an activation vector (did MACs)"),
    "STALL_IN":   (0x48, "R",  "cycles the array waited for input data (X tile or W fold not yet streamed in)"),
    "STALL_OUT":  (0x4C, "R",  "cycles m_axis had data but tready was low (output backpressure)"),
    "JOBS":       (0x50, "R",  "jobs completed since reset"),
    # Window mode (FLAGS.WINDOW): the convolution's geometry. X holds input pixels of CB blocks of ROWS
    # channels; k-fold f is (ky, kx, cb) with cb fastest; the products below are derived by the host.
    "WIN_SHAPE":  (0x60, "RW", "IW [15:0] input width in pixels, OW [31:16] output width"),
    "WIN_GEOM":   (0x64, "RW", "CB [11:0] channel blocks per pixel, KW [15:12], STRIDE [19:16], DIL [23:20], "
                               "PAD_L [27:24]"),
    "WIN_ROW":    (0x68, "RW", "X buffer rows per input row: IW * CB"),
    "WIN_XSTEP":  (0x6C, "RW", "X buffer address step per output column: STRIDE * CB"),
    "WIN_YSTEP":  (0x70, "RW", "X buffer address step per output row: STRIDE * IW * CB"),
    "WIN_DX":     (0x74, "RW", "X buffer address step per kernel column: DIL * CB"),
    "WIN_DY":     (0x78, "RW", "X buffer address step per kernel row: DIL * IW * CB"),
    # Depthwise unit (FLAGS.DW_UNIT): a 3x3 depthwise convolution computed as the feature map streams in.
    "DW_SHAPE":   (0x7C, "RW", "IW [15:0] input width, IH [31:16] input height (pixels)"),
    "DW_OUT":     (0x80, "RW", "OW [15:0] output width, OH [31:16] output height"),
    "DW_VIRT":    (0x84, "RW", "VW [15:0] positions walked per row, VH [31:16] rows walked per image (the input "
                               "plus the bottom/right padding the last outputs need)"),
    "DW_GEOM":    (0x88, "RW", "BEATS [11:0] beats per pixel (C / 8), STRIDE [15:12], PAD_T [19:16], PAD_L [23:20], "
                               "IMAGES [31:24]"),
}
DW_REGS = ("DW_SHAPE", "DW_OUT", "DW_VIRT", "DW_GEOM")
WINDOW_REGS = ("WIN_SHAPE", "WIN_GEOM", "WIN_ROW", "WIN_XSTEP", "WIN_YSTEP", "WIN_DX", "WIN_DY")
ADDR_W = 8  # AXI-Lite address bits (256-byte register window)

# Bit fields: register -> {field: (lsb, width, description)}.
FIELDS = {
    "CTRL": {"START": (0, 1, "start a job (ignored while busy)"),
             "SOFT_RESET": (1, 1, "abort the job; conv_accel swallows the rest of a packet in flight")},
    "STATUS": {"IDLE": (0, 1, "no job running"), "DONE": (1, 1, "a job finished since the last START"),
               "ERROR": (2, 1, "the stream did not match the job, or the job's dimensions do not fit")},
    "FLAGS": {"RELU": (0, 1, "fused ReLU"), "OUT_INT32": (1, 1, "int32 accumulators + bias out instead of int8"),
              "WINDOW": (2, 1, "X is a feature map (NHWC, tile headers); the engine forms the windows"),
              "DEPTHWISE": (3, 1, "with WINDOW: n-fold j reads only channel block j (needs ROWS == COLS)"),
              "OUT_NHWC": (4, 1, "int8 outputs leave per tile in NHWC order (rows of n-folds * COLS bytes)"),
              "DW_UNIT": (5, 1, "depthwise 3x3 in the line-buffer unit: X streams once, outputs leave NHWC")},
    "WIN_SHAPE": {"IW": (0, 16, "input width (pixels)"), "OW": (16, 16, "output width (pixels)")},
    "WIN_GEOM": {"CB": (0, 12, "channel blocks of ROWS channels per pixel"), "KW": (12, 4, "kernel width"),
                 "STRIDE": (16, 4, "stride"), "DIL": (20, 4, "dilation"), "PAD_L": (24, 4, "left zero padding")},
    "DW_CONFIG": {"LB_DEPTH": (0, 16, "line-buffer beats: IW * C / 8 <= LB_DEPTH"),
                  "CH": (16, 16, "max channels of a depthwise-unit job (0: the build has no unit)")},
    "DW_SHAPE": {"IW": (0, 16, "input width (pixels)"), "IH": (16, 16, "input height (pixels)")},
    "DW_OUT": {"OW": (0, 16, "output width"), "OH": (16, 16, "output height")},
    "DW_VIRT": {"VW": (0, 16, "positions walked per row"), "VH": (16, 16, "rows walked per image")},
    "DW_GEOM": {"BEATS": (0, 12, "beats per pixel: C / 8"), "STRIDE": (12, 4, "stride (1 or 2)"),
                "PAD_T": (16, 4, "top zero padding (0..2)"), "PAD_L": (20, 4, "left zero padding (0..2)"),
                "IMAGES": (24, 8, "images in the job (M = IMAGES * OH * OW)")},
    "CONFIG": {"ROWS": (0, 8, "systolic array rows"), "COLS": (8, 8, "systolic array columns"),
               "OUT_LANES": (16, 8, "requantization lanes: int8 output channels per cycle")},
}
CTRL_START, CTRL_SOFT_RESET = 1 << FIELDS["CTRL"]["START"][0], 1 << FIELDS["CTRL"]["SOFT_RESET"][0]
STATUS_IDLE, STATUS_DONE, STATUS_ERROR = (1 << FIELDS["STATUS"][f][0] for f in ("IDLE", "DONE", "ERROR"))
FLAG_RELU, FLAG_OUT_INT32, FLAG_WINDOW, FLAG_DEPTHWISE, FLAG_OUT_NHWC, FLAG_DW_UNIT = (
    1 << FIELDS["FLAGS"][f][0] for f in ("RELU", "OUT_INT32", "WINDOW", "DEPTHWISE", "OUT_NHWC", "DW_UNIT"))
COUNTERS = ("CYCLES", "MAC_CYCLES", "STALL_IN", "STALL_OUT", "JOBS")   # performance counters, read after a job


def field(reg: str, name: str, value: int) -> int:
    """The value of bit field `name` of register `reg` in a register value."""
    lsb, width, _ = FIELDS[reg][name]
    return (int(value) >> lsb) & ((1 << width) - 1)


def status_text(status: int) -> str:
    """STATUS decoded, e.g. 'IDLE, DONE' ('busy' when no bit is set)."""
    names = [f for f in FIELDS["STATUS"] if field("STATUS", f, status)]
    return ", ".join(names) if names else "busy"

# Stream format (64-bit beats, little-endian) of one job, in this order:
#   1. params:  for each n-fold (COLS channels, the last one zero-padded): COLS beats {m (uint32), bias (int32)}
#               then COLS/8 beats of shifts (one byte per channel).
#   2. X tile 0: for each k-fold, for each row of the tile: ROWS bytes (ROWS/8 beats), zero-padded in k.
#   3. W:        for each n-fold, for each k-fold: ROWS tile rows of COLS bytes (COLS/8 beats), bottom row first
#                (pf.systolic.pack_weights order).
#   4. X tiles 1, 2, ...: as tile 0.
# Window mode (FLAGS.WINDOW): M = OH * OW output pixels, M_TILE a multiple of OW (whole output rows), K =
#   (k-folds) * ROWS with k-folds = KH * KW * CB (KH * KW with DEPTHWISE). Each X tile is one header beat
#   {A0 (int32) [63:32], REL_Y0 (int16) [31:16], NROWS (uint16) [15:0]} then NROWS input rows of IW pixels of
#   CB blocks of ROWS channels (NHWC, channels zero-padded to CB * ROWS): NROWS * WIN_ROW rows of ROWS bytes.
#   REL_Y0 is the tile's first output row's window top (oy0 * STRIDE - PAD_T) minus the first streamed input
#   row; A0 = REL_Y0 * IW * CB - PAD_L * CB. Window taps outside the streamed rows or the width read zero.
# Output: for each tile, for each n-fold: the tile's rows, each COLS int8 (COLS/8 beats) or COLS int32
#   (COLS/2 beats); with OUT_NHWC (int8): for each tile, for each row: every n-fold's COLS int8 (the output
#   channels zero-padded to n-folds * COLS); tlast on the job's last beat.
# Depthwise unit (FLAGS.DW_UNIT): M = IMAGES * OH * OW, K = 9, N = C (a multiple of 8, <= DW_CONFIG.CH); 3x3
#   kernel, dilation 1. Order: 1. params as above; 2. W: for each n-fold j, for each k-fold f: ROWS rows of COLS
#   bytes, row r = tap t = f * ROWS + r (t = ky * 3 + kx; rows t >= 9 zero) of channels j * COLS ..; 3. X: each
#   image's NHWC map, IH * IW * BEATS beats, no headers. Output: for each image, each output pixel: its C int8
#   (C / 8 beats) or C int32 (C / 2 beats) in channel order; tlast on the job's last beat.
BEAT_BYTES = 8


GENERATED_BY = "Generated by pytorch_fpga/contract/regmap.py -- do not edit; run `make regen`."


def verilog_header() -> str:
    """The `define`s of the register map for the RTL: offsets, bit positions, the ID value."""
    lines = [f"// {GENERATED_BY}", f"`define PFA_MAGIC 32'h{MAGIC:08X}", f"`define PFA_ADDR_W {ADDR_W}"]
    lines += [f"`define PFA_REG_{name} {ADDR_W}'h{off:02X}  // {mode} {doc}"
              for name, (off, mode, doc) in REGISTERS.items()]
    lines += [f"`define PFA_{reg}_{name} {lsb}  // bit{'s' if w > 1 else ''} of {reg}: {doc}"
              for reg, fs in FIELDS.items() for name, (lsb, w, doc) in fs.items()]
    return "\n".join(lines) + "\n"


def c_header() -> str:
    """The register map as C #defines for the Verilator harness."""
    lines = [f"// {GENERATED_BY}", "#pragma once", f"#define PFA_MAGIC 0x{MAGIC:08X}u"]
    lines += [f"#define PFA_REG_{name} 0x{off:02X}u  // {mode} {doc}" for name, (off, mode, doc) in REGISTERS.items()]
    lines += [f"#define PFA_{reg}_{name} (1u << {lsb})" for reg, fs in FIELDS.items()
              for name, (lsb, w, _) in fs.items() if w == 1]
    return "\n".join(lines) + "\n"


def fields() -> list[dict]:
    """Every register with its offset, access, description and bit fields (what the .hwh describes)."""
    access = {"R": "read-only", "W": "write-only", "RW": "read-write"}
    return [{"name": name, "offset": off, "access": access[mode], "description": doc,
             "fields": [{"name": f, "lsb": lsb, "width": w, "description": d}
                        for f, (lsb, w, d) in FIELDS.get(name, {"VALUE": (0, 32, doc)}).items()]}
            for name, (off, mode, doc) in REGISTERS.items()]


def offset(name: str) -> int:
    """Byte offset of register `name`."""
    try:
        return REGISTERS[name][0]
    except KeyError:
        raise KeyError(f"conv_accel has no register {name!r}; registers: {', '.join(REGISTERS)}") from None


ROOT = Path(__file__).resolve().parents[2]
HEADER = ROOT / "rtl" / "regmap_generated.vh"
C_HEADER = ROOT / "pytorch_fpga" / "sim" / "verilated" / "regmap_generated.h"
GENERATED = {HEADER: verilog_header, C_HEADER: c_header}


def stale() -> list[Path]:
    """Generated files whose content differs from what regmap generates now."""
    return [p for p, gen in GENERATED.items() if not p.is_file() or p.read_text() != gen()]


def regen() -> list[Path]:
    """Write every generated file; return the ones that changed."""
    changed = stale()
    for p in changed:
        p.write_text(GENERATED[p]())
    return changed


if __name__ == "__main__":
    for p in regen() or ["nothing: every generated file is current"]:
        print(f"regmap: wrote {p}")
