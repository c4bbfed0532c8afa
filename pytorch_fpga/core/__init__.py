"""Layer 1, core math: int8 GEMM, convolution (loops, im2col, geometry) and quantization. numpy only."""
