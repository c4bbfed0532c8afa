"""pytorch_fpga.nn: the PyTorch models of the course (e.g. `pytorch_fpga.nn.digits_cnn`).

This subpackage is the only part of the library that imports torch; everything else needs numpy alone,
so the board-side runtime never pulls torch in. Import its modules explicitly when you want them.
"""
