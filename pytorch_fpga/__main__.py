"""`python -m pytorch_fpga`: the command line (demo, lint, ...)."""
from pytorch_fpga.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
