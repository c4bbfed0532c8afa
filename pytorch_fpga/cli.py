"""Command line: `python -m pytorch_fpga {demo,lint}`."""
from __future__ import annotations

import argparse
import sys


def _lint(args) -> int:
    from .hw import lint
    return 0 if lint.lint_all() else 1


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
    l = sub.add_parser("lint", help="verilator --lint-only -Wall on every module in rtl/")
    l.set_defaults(fn=_lint)
    args = p.parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
