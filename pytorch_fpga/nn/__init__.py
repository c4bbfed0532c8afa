"""pytorch_fpga.nn: PyTorch on the accelerator (pf.compile, FPGAConv2d, FPGALinear, profile) and the course models
(pf.nn.digits_cnn, pf.nn.digits_resnet, pf.nn.models: ResNet-18 and MobileNetV2).

This subpackage is the only part of the library that imports torch; everything else needs numpy alone,
so the board-side runtime never pulls torch in.
"""
import importlib

from pytorch_fpga.nn.compiled_model import CompiledModel, compile, from_onnx  # noqa: F401
from pytorch_fpga.nn.modules import FPGAConv2d, FPGALinear, Int8Activation, Int8Through, fuse_bn  # noqa: F401
from pytorch_fpga.nn.offload import CalibrationWarning, choose_backend, fpga_layers, offload  # noqa: F401
from pytorch_fpga.nn.profile import Profile, profile  # noqa: F401

_MODELS = ("digits_cnn", "digits_resnet", "models")


def __getattr__(name):
    if name in _MODELS:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'pytorch_fpga.nn' has no attribute {name!r}")
