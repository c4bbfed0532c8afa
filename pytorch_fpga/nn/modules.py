"""FPGAConv2d and FPGALinear: inference modules whose int8 work runs on conv_accel through pf.Accelerator."""
from __future__ import annotations

import warnings

import numpy as np
import torch
from torch import nn

from pytorch_fpga.core import quant
from pytorch_fpga.runtime import accelerator as runtime
from pytorch_fpga.runtime import compiler

OUTPUTS = ("int8", "float", "acc")


class Int8Activation:
    """int8 values q (a torch.int8 tensor) with their scale: what flows between offloaded layers.

    Only offloaded layers and Int8Through-wrapped modules (pooling, flatten, ReLU) receive it; .float() gives
    the real values q * scale.
    """

    def __init__(self, q: torch.Tensor, scale: float):
        self.q, self.scale = q, float(scale)

    @property
    def shape(self):
        return self.q.shape

    def float(self) -> torch.Tensor:
        """q * scale as float32, rounded once from float64 (what an output='float' layer returns)."""
        return (self.q.double() * self.scale).float()

    def __repr__(self):
        return f"Int8Activation(shape={tuple(self.q.shape)}, scale={self.scale:.4g})"


class Int8Through(nn.Module):
    """Runs a module that commutes with a positive scale (max pooling, flatten, ReLU) directly on int8."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, x):
        if isinstance(x, Int8Activation):
            if isinstance(self.module, nn.Dropout):      # identity in eval mode
                return x
            return Int8Activation(self.module(x.q), x.scale)
        return self.module(x)


def fuse_bn(layer: nn.Module, bn: nn.BatchNorm2d | None = None):
    """(weight, bias) as float64 numpy with an eval-mode BatchNorm folded into the conv/linear layer."""
    W = layer.weight.detach().double().cpu().numpy().copy()
    b = np.zeros(W.shape[0]) if layer.bias is None else layer.bias.detach().double().cpu().numpy().copy()
    if bn is None:
        return W, b
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError(f"{bn} has no running statistics (track_running_stats=False): nothing to fold")
    mean, var = bn.running_mean.double().cpu().numpy(), bn.running_var.double().cpu().numpy()
    gamma = bn.weight.detach().double().cpu().numpy() if bn.affine else np.ones_like(mean)
    beta = bn.bias.detach().double().cpu().numpy() if bn.affine else np.zeros_like(mean)
    k = gamma / np.sqrt(var + bn.eps)
    return W * k.reshape((-1,) + (1,) * (W.ndim - 1)), (b - mean) * k + beta


class _FPGALayer(nn.Module):
    """Shared parts: input quantization, the inference-only checks, output conversion, the last report."""

    def __init__(self, qlayer: quant.QuantLayer, accelerator: runtime.Accelerator | None, output: str, name: str):
        super().__init__()
        if output not in OUTPUTS:
            raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
        self.q = qlayer
        self.acc = accelerator or runtime.Accelerator()
        self.output = output
        self.layer_name = name
        self.last_report = None
        self.reset_saturation()
        self.train(False)

    def reset_saturation(self) -> None:
        """Zero the saturation counters (inputs clipped when quantized, int8 outputs at -128 or 127)."""
        self.saturation = {"inputs": 0, "inputs_clipped": 0, "outputs": 0, "outputs_at_limit": 0}
        self._range_warned = False

    def _count_input(self, xs: np.ndarray) -> None:
        """Count inputs (in units of the input scale) that quantizing clips; warn once when far out of range."""
        r = np.rint(xs)
        clipped = int(np.count_nonzero((r > 127) | (r < -128)))
        self.saturation["inputs"] += xs.size
        self.saturation["inputs_clipped"] += clipped
        peak = float(np.abs(xs).max(initial=0.0)) / 127
        if peak > 2 and not self._range_warned:
            self._range_warned = True
            warnings.warn(f"{type(self).__name__} '{self.layer_name}': inputs reach {peak:.1f}x the calibrated "
                          f"range (|x| up to {peak * 127 * self.q.s_in:.4g}, calibrated {127 * self.q.s_in:.4g}); "
                          f"{clipped} of {xs.size} values were clipped to int8. Calibrate with data like these "
                          "inputs (pf.offload(model, data))", RuntimeWarning, stacklevel=4)

    def train(self, mode: bool = True):
        if mode:
            raise RuntimeError(f"{type(self).__name__} '{self.layer_name}' runs inference only on the accelerator: "
                               "keep the model in eval mode (train the float model, then pf.offload it again)")
        return super().train(False)

    def _int8_input(self, x) -> np.ndarray:
        if not isinstance(x, (torch.Tensor, Int8Activation)):
            raise TypeError(f"{type(self).__name__} '{self.layer_name}' expects a torch.Tensor, got {type(x).__name__}")
        if isinstance(x, torch.Tensor) and x.requires_grad and torch.is_grad_enabled():
            raise RuntimeError(f"{type(self).__name__} '{self.layer_name}': no backward pass through the accelerator; "
                               "run inference under torch.no_grad() (or detach the input)")
        if isinstance(x, Int8Activation):
            if np.isclose(x.scale, self.q.s_in, rtol=1e-9, atol=0):
                return x.q.numpy()                               # already int8 at this layer's scale
            x = x.float()
        if not x.is_floating_point():
            raise TypeError(f"{type(self).__name__} '{self.layer_name}' expects float input (it quantizes it with "
                            f"scale {self.q.s_in:.3g}), got {x.dtype}; convert with .float()")
        xd = x.detach().cpu().double().numpy()
        self._count_input(xd / self.q.s_in)
        return quant.quantize(xd, self.q.s_in)

    def _result(self, Y: np.ndarray) -> torch.Tensor:
        if self.output != "acc":                                 # int8 outputs: count those at the limits
            self.saturation["outputs"] += Y.size
            self.saturation["outputs_at_limit"] += int(np.count_nonzero((Y == 127) | (Y == -128)))
        if self.output == "int8":
            return Int8Activation(torch.from_numpy(np.ascontiguousarray(Y)), self.q.s_out)
        if self.output == "float":
            return torch.from_numpy(quant.dequantize(Y, self.q.s_out).astype(np.float32))
        axis = self.q.channel_axis if Y.ndim >= (4 if self.q.w_int8.ndim == 4 else 1) else 0
        scale = self.q.s_in * self.q.s_w                         # int32 accumulators -> float
        out = quant.dequantize(Y, scale, axis=axis).astype(np.float32)
        return torch.from_numpy(np.maximum(out, 0) if self.q.relu else out)

    def extra_repr(self) -> str:
        return (f"'{self.layer_name}', relu={self.q.relu}, s_in={self.q.s_in:.4g}, s_out={self.q.s_out:.4g}, "
                f"output={self.output}, backend={self.acc.backend.name}")


class FPGAConv2d(_FPGALayer):
    """nn.Conv2d (with a folded BatchNorm and fused ReLU) as int8 on the accelerator."""

    def __init__(self, qlayer, conv_args: dict, accelerator=None, output="float", name="conv"):
        super().__init__(qlayer, accelerator, output, name)
        self.conv_args = dict(conv_args)

    @classmethod
    def from_float(cls, conv: nn.Conv2d, s_in: float, s_out: float, bn: nn.BatchNorm2d | None = None,
                   relu: bool = False, accelerator=None, output="float", name="conv") -> FPGAConv2d:
        """Quantize a float Conv2d (+ BatchNorm2d, + ReLU) for activation scales s_in -> s_out."""
        if not isinstance(conv, nn.Conv2d):
            raise TypeError(f"{name}: FPGAConv2d.from_float takes an nn.Conv2d, got {type(conv).__name__} "
                            "(supported: nn.Conv2d and nn.Linear)")
        W, b = fuse_bn(conv, bn)
        q = quant.quantize_layer(W, b, s_in, s_out, relu=relu)
        compiler.check_accumulator(q.w_int8.reshape(q.w_int8.shape[0], -1).T, q.bias_int32, f"layer '{name}'")
        args = dict(stride=conv.stride, padding=conv.padding, dilation=conv.dilation, groups=conv.groups,
                    padding_mode=conv.padding_mode)
        return cls(q, args, accelerator, output, name)

    def forward(self, x):
        X = self._int8_input(x)
        if X.ndim not in (3, 4):
            raise ValueError(f"FPGAConv2d '{self.layer_name}' expects (N, C, H, W) or (C, H, W), got {tuple(X.shape)}")
        if self.output == "acc":
            Y, self.last_report = self.acc.conv2d(X, self.q.w_int8, self.q.bias_int32, out_int32=True,
                                                  **self.conv_args)
        else:
            Y, self.last_report = self.acc.conv2d_layer(X, self.q, **self.conv_args)
        return self._result(Y)


class FPGALinear(_FPGALayer):
    """nn.Linear (with a fused ReLU) as int8 on the accelerator."""

    @classmethod
    def from_float(cls, linear: nn.Linear, s_in: float, s_out: float, relu: bool = False, accelerator=None,
                   output="float", name="linear") -> FPGALinear:
        """Quantize a float Linear (+ ReLU) for activation scales s_in -> s_out."""
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"{name}: FPGALinear.from_float takes an nn.Linear, got {type(linear).__name__}")
        W, b = fuse_bn(linear)
        q = quant.quantize_layer(W, b, s_in, s_out, relu=relu)
        compiler.check_accumulator(q.w_int8.T, q.bias_int32, f"layer '{name}'")
        return cls(q, accelerator, output, name)

    def forward(self, x):
        X = self._int8_input(x)
        lead, K = X.shape[:-1], X.shape[-1]
        X2 = X.reshape(-1, K)
        if self.output == "acc":                                 # an empty batch runs no job (pf.Accelerator)
            Y, self.last_report = self.acc.gemm(X2, self.q.w_int8.T, self.q.bias_int32, out_int32=True)
        else:
            Y, self.last_report = self.acc.gemm(X2, self.q.w_int8.T, self.q.bias_int32, self.q.m, self.q.shift,
                                                self.q.relu)
        return self._result(Y.reshape(*lead, Y.shape[-1]))     # not -1: ambiguous for an empty batch
