"""Layer 4, the runtime that runs on a board: compiler, backends, pynq driver, pf.Accelerator. numpy + pynq only."""
