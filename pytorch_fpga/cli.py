"""Command line: `python -m pytorch_fpga {demo,lint}`."""
from __future__ import annotations

import argparse
import sys


def _lint(args) -> int:
    from .hw import lint
    return 0 if lint.lint_all() else 1


def _synth(args) -> int:
    import json
    from .hw import synth
    rep = synth.accel_report(args.config, args.json)
    r, u = rep["resources"], rep["utilization"]
    print(f"conv_accel '{args.config}' on xc7z020 (Yosys estimate): " + ", ".join(
        f"{k} {r[k]:g} ({u[k]:.0%})" for k in ("LUT", "FF", "DSP48E1", "RAMB36")))
    print("fits (DSP <= 220, LUT <= 70%, RAMB36 <= 140):", rep["fits"])
    if args.json:
        print(f"wrote {args.json}")
    return 0 if rep["fits"] else 1


def _demo(args) -> int:
    from . import demo
    return demo.main(args)


def main(argv=None) -> int:
    """Parse the command line and run a subcommand; return the exit code."""
    p = argparse.ArgumentParser(prog="python -m pytorch_fpga", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("demo", help="run a random int8 GEMM on the Verilated systolic array and check it")
    d.add_argument("--rows", type=int, default=8, help="array rows (default 8)")
    d.add_argument("--cols", type=int, default=8, help="array columns (default 8)")
    d.add_argument("--M", type=int, default=64, help="activation vectors (default 64)")
    d.add_argument("--K", type=int, default=20, help="reduction depth (default 20)")
    d.add_argument("--N", type=int, default=12, help="outputs per vector (default 12)")
    d.add_argument("--sim", default="verilator", choices=["verilator", "icarus"], help="simulator")
    d.add_argument("--seed", type=int, default=0)
    d.set_defaults(fn=_demo)
    b = sub.add_parser("bench", help="benchmark a fixed layer set on the simulated accelerator (JSON out)")
    b.add_argument("--json", default=None, help="write the results to this JSON file")
    b.add_argument("--backend", default="verilator", choices=["verilator", "model"])
    b.add_argument("--config", default="z1")
    b.add_argument("--no-synth", action="store_true", help="skip the Yosys resource estimate (~2-3 min)")
    b.set_defaults(fn=lambda a: __import__("pytorch_fpga.bench", fromlist=["main"]).main(a))
    s = sub.add_parser("synth", help="Yosys resource estimate of conv_accel for the XC7Z020")
    s.add_argument("--config", default="z1")
    s.add_argument("--json", default=None, help="write the report to this JSON file")
    s.set_defaults(fn=_synth)
    l = sub.add_parser("lint", help="verilator --lint-only -Wall on every module in rtl/")
    l.set_defaults(fn=_lint)
    args = p.parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
