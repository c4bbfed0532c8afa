"""The board-side runtime (numpy + pynq, no torch): backends, the pynq driver, compiled programs.

pf.runtime.load(path, backend) reads a program saved by pf.compile(...).save(path).
"""


def __getattr__(name):
    if name in ("load", "Compiled"):
        from pytorch_fpga.runtime import compiled
        return getattr(compiled, name)
    raise AttributeError(f"module 'pytorch_fpga.runtime' has no attribute {name!r}")
