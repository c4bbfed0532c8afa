"""Layer 5, simulation and tools: simulator discovery, cocotb runners, Verilator, the virtual PYNQ, synthesis, lint."""
