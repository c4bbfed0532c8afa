"""`python -m pytorch_fpga`: the command line (demo, lint, ...)."""
from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
