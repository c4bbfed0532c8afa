"""Shared cocotb testbench code: AXI-Stream drivers for the array and the accelerator, random-job helpers."""
