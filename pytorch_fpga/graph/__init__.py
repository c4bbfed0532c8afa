"""The model compiler's graph layer: IR, float interpreter, passes, quantization, lowering to programs. Torch-free."""
