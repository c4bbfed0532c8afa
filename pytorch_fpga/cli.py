"""Command line: `python -m pytorch_fpga {demo,bench,soak,synth,sizing,array-demo,lint}`."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _lint(args) -> int:
    from pytorch_fpga.sim import lint
    return 0 if lint.lint_all() else 1


def _synth(args) -> int:
    import json

    from pytorch_fpga.sim import synth, timing
    tim = None if args.no_timing else timing.timing_report(args.config)   # one Yosys run: cells and netlist
    rep = synth.accel_report(args.config, cells=tim["cell_counts"] if tim else None)
    r, u = rep["resources"], rep["utilization"]
    print(f"conv_accel '{args.config}' on xc7z020 (Yosys estimate): " + ", ".join(
        f"{k} {r[k]:g} ({u[k]:.0%})" for k in ("LUT", "FF", "DSP48E1", "RAMB36")))
    print("fits (DSP <= 220, LUT <= 70%, RAMB36 <= 140):", rep["fits"])
    if tim:
        rep["timing"] = {k: v for k, v in tim.items() if k != "cell_counts"}
        print(timing.format_report(tim))
    if args.json:
        Path(args.json).write_text(json.dumps(rep, indent=1))
        print(f"wrote {args.json}")
    return 0 if rep["fits"] else 1


def _demo(args) -> int:
    from pytorch_fpga import demo
    return demo.main(args)


def _bench(args) -> int:
    from pytorch_fpga import bench
    return bench.main(args)


def _soak(args) -> int:
    from pytorch_fpga import soak
    return soak.main(args)


def _array_demo(args) -> int:
    from pytorch_fpga.sim import array_rtl
    return array_rtl.main(args)


def _sizing(args) -> int:
    from pytorch_fpga import sizing
    return sizing.main(args)


def main(argv=None) -> int:
    """Parse the command line and run a subcommand; return the exit code."""
    p = argparse.ArgumentParser(prog="python -m pytorch_fpga", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("demo", help="the digits CNN compiled for the simulated accelerator: accuracy, "
                                    "bit-exactness, placement, projected end-to-end time")
    d.add_argument("--backend", default="auto", choices=["auto", "verilator", "model", "pynq"],
                   help="where the offloaded layers run (auto: a board, else the virtual PYNQ, else Verilator, "
                        "else the numpy model)")
    d.add_argument("--images", type=int, default=None, help="held-out images to classify (default: all 450)")
    d.add_argument("--config", default="z1", help="accelerator configuration (default z1, the PYNQ-Z1 build)")
    d.add_argument("--batch", type=int, default=150, help="images per accelerator call")
    d.add_argument("--calibration", type=int, default=500, help="training images used to calibrate scales")
    d.set_defaults(fn=_demo)
    b = sub.add_parser("bench", help="benchmark a fixed layer set on the simulated accelerator and the compiler's "
                                     "host work per inference (JSON out)")
    b.add_argument("--json", default=None, help="write the results to this JSON file")
    b.add_argument("--backend", default="verilator", choices=["verilator", "pynq", "model"])
    b.add_argument("--config", default="z1")
    b.add_argument("--no-synth", action="store_true", help="skip the Yosys resource estimate (~2-3 min)")
    b.set_defaults(fn=_bench)
    k = sub.add_parser("soak", help="random jobs across the job space on model, verilator and pynq, "
                                    "checked against an int64 oracle")
    k.add_argument("--jobs", type=int, default=1000, help="random jobs (default 1000)")
    k.add_argument("--seed", type=int, default=0, help="seed; job i of a soak replays alone (soak.job_rng)")
    k.add_argument("--config", default="sim8", help="accelerator build (default sim8: small buffers, so every "
                                                  "limit is reached quickly)")
    k.add_argument("--backends", default="model,verilator,pynq", help="comma-separated backends")
    k.add_argument("--json", default=None, help="write the results to this JSON file")
    k.add_argument("--quiet", action="store_true", help="no progress bar")
    k.set_defaults(fn=_soak)
    s = sub.add_parser("synth", help="Yosys resource and clock-rate estimate of conv_accel for the XC7Z020")
    s.add_argument("--config", default="z1")
    s.add_argument("--json", default=None, help="write the report to this JSON file")
    s.add_argument("--no-timing", action="store_true", help="resources only: skip the clock-rate estimate "
                   "(logic depth x DS187 delays; an estimate, not a timing closure)")
    s.set_defaults(fn=_synth)
    z = sub.add_parser("sizing", help="X/W/accumulator depths swept with the cycle model on ResNet-18 against the "
                       "XC7Z020's 140 RAMB36 (~2-3 min)")
    z.set_defaults(fn=_sizing)
    a = sub.add_parser("array-demo", help="a random int8 GEMM on the simulated systolic array, checked")
    a.add_argument("--rows", type=int, default=8)
    a.add_argument("--cols", type=int, default=8)
    a.add_argument("--M", type=int, default=64)
    a.add_argument("--K", type=int, default=20)
    a.add_argument("--N", type=int, default=12)
    a.add_argument("--sim", default="verilator", choices=["verilator", "icarus"])
    a.add_argument("--seed", type=int, default=0)
    a.set_defaults(fn=_array_demo)
    lp = sub.add_parser("lint", help="verilator --lint-only -Wall on every module in rtl/")
    lp.set_defaults(fn=_lint)
    args = p.parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
