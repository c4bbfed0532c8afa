"""A small CNN for the 8x8 digits, and the same network run in int8 with the library's integer arithmetic.

The model exercises what the accelerator runs: a 3x3 conv on one input channel, a 3x3 conv with 144-long
dot products, a 2x2 max pool, a depthwise 3x3 conv (groups = channels) followed by a pointwise 1x1 conv, and
a final Linear. Every conv is followed by BatchNorm and ReLU, which fold away before quantization.

    model = load_pretrained()                                  # shipped state_dict, ~98% test accuracy
    logits, layers = quantized_inference(model, X_test, X_train)

quantized_inference is four small steps, each usable on its own:
    ops    = fold_model(model)              # BatchNorm folded into each conv (fuse_bn); float64 numpy ops
    scales = calibrate(ops, calib_X)        # one activation scale per tensor (min/max or percentile)
    qmodel = quantize_model(ops, scales)    # pf.quant.quantize_layer per conv/linear: int8 W, int32 b, (m, shift)
    logits, trace = run_int8(qmodel, X)     # int8 in, pf.conv.conv2d / pf.gemm.gemm_int8, wrap to int32,
                                            # QuantLayer.requant (ReLU fused); int32 logits -> float
Nothing after fold_model touches torch: the integer path is numpy, bit for bit what the hardware computes.

`python -m pytorch_fpga.nn.digits_cnn` retrains the network (a few seconds) and rewrites the checkpoint.
"""
from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from pytorch_fpga.core import conv as pconv
from pytorch_fpga.core import gemm as pgemm
from pytorch_fpga.core import quant as pq
from pytorch_fpga.core.datasets import load_digits_split
from pytorch_fpga.nn.modules import fuse_bn  # noqa: F401  (BatchNorm folding; digits_cnn.fuse_bn for the notebooks)

CHECKPOINT = Path(__file__).resolve().parent.parent / "data" / "digits_cnn.pt"
DEFAULT_EPOCHS = 15


# --- the float model ---------------------------------------------------------------------------------------
def make_model(seed: int = 0) -> nn.Sequential:
    """The digits CNN (1x8x8 -> 10 logits, ~11k parameters), initialised from torch's RNG seeded with `seed`.

    conv1  Conv2d(1, 16, 3, padding=1)  + BN + ReLU    16x8x8    K = 9
    conv2  Conv2d(16, 32, 3, padding=1) + BN + ReLU    32x8x8    K = 144
    pool   MaxPool2d(2)                                32x4x4
    dw     Conv2d(32, 32, 3, padding=1, groups=32) + BN + ReLU   (depthwise, K = 9)
    pw     Conv2d(32, 32, 1)            + BN + ReLU    32x4x4    (pointwise, K = 32)
    fc     Flatten, Linear(512, 10)                    10        K = 512
    Convs have no bias of their own: the BatchNorm after each one supplies it (and folds into it).
    """
    def block(name, conv, c):
        return [(name, conv), (f"{name}_bn", nn.BatchNorm2d(c)), (f"{name}_relu", nn.ReLU())]

    with torch.random.fork_rng(devices=[]):           # seed the init without disturbing the caller's RNG
        torch.manual_seed(seed)
        return nn.Sequential(OrderedDict(
            block("conv1", nn.Conv2d(1, 16, 3, padding=1, bias=False), 16)
            + block("conv2", nn.Conv2d(16, 32, 3, padding=1, bias=False), 32)
            + [("pool", nn.MaxPool2d(2))]
            + block("dw", nn.Conv2d(32, 32, 3, padding=1, groups=32, bias=False), 32)
            + block("pw", nn.Conv2d(32, 32, 1, bias=False), 32)
            + [("flatten", nn.Flatten()), ("fc", nn.Linear(32 * 4 * 4, 10))]))


def _tensor(X, dtype=torch.float32) -> torch.Tensor:
    return X.to(dtype) if isinstance(X, torch.Tensor) else torch.as_tensor(np.asarray(X), dtype=dtype)


def train(model: nn.Module, X, y, epochs: int = DEFAULT_EPOCHS, seed: int = 0, lr: float = 3e-3,
          batch_size: int = 32) -> nn.Module:
    """Train in place with Adam + cross-entropy (one-cycle learning-rate schedule); returns the model in eval mode.

    Deterministic: the minibatch order comes from a torch.Generator seeded with `seed`, torch's global RNG is
    seeded too, and training runs on one thread (restored afterwards), so the same inputs give the same
    weights bit for bit on a given machine. ~2-4 s for the digits on one core.
    """
    X, y = _tensor(X), _tensor(y, torch.int64)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        steps = epochs * ((len(y) + batch_size - 1) // batch_size)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(steps, 1))
        loss_fn = nn.CrossEntropyLoss()
        model.train()
        for _ in range(epochs):
            for idx in torch.randperm(len(y), generator=gen).split(batch_size):
                opt.zero_grad()
                loss_fn(model(X[idx]), y[idx]).backward()
                opt.step()
                sched.step()
    finally:
        torch.set_num_threads(threads)
    return model.eval()


@torch.no_grad()
def predict(model: nn.Module, X) -> np.ndarray:
    """Float logits (N, 10) as a numpy array, in eval mode."""
    model.eval()
    return model(_tensor(X)).numpy()


def accuracy(logits, y) -> float:
    """Fraction of rows whose argmax equals the label."""
    return float(np.mean(np.argmax(np.asarray(logits), axis=1) == np.asarray(y)))


def load_pretrained(path=CHECKPOINT) -> nn.Sequential:
    """The digits CNN with the shipped weights (pytorch_fpga/data/digits_cnn.pt), in eval mode."""
    model = make_model()
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model.eval()


# --- step 1: fold BatchNorm, turn the model into a list of numpy ops ----------------------------------------
@dataclass
class Op:
    """One step of the folded network, with float64 numpy parameters (no torch)."""
    kind: str                                   # "conv", "linear", "maxpool" or "flatten"
    name: str                                   # the module's name in the Sequential
    weight: np.ndarray | None = None            # conv (O, C/g, kh, kw) or linear (O, K), BatchNorm folded in
    bias: np.ndarray | None = None              # (O,)
    stride: tuple = (1, 1)
    padding: tuple = (0, 0)
    groups: int = 1
    relu: bool = False                          # a ReLU follows (fused into the requantization)
    kernel: int = 2                             # maxpool window (= its stride)


def fold_model(model: nn.Sequential) -> list[Op]:
    """The Sequential as a list of Ops: Conv2d [+ BatchNorm2d] [+ ReLU], Linear [+ ReLU], MaxPool2d, Flatten.

    Dropout and Identity are skipped (inference). Anything else raises: this is a reference, not a compiler.
    """
    mods = [(n, m) for n, m in model.named_children() if not isinstance(m, (nn.Dropout, nn.Identity))]
    ops, i = [], 0
    while i < len(mods):
        name, m = mods[i]
        nxt = lambda j: mods[j][1] if j < len(mods) else None         # noqa: E731
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            j = i + 1
            bn = None
            if isinstance(m, nn.Conv2d) and isinstance(nxt(j), nn.BatchNorm2d):
                bn, j = nxt(j), j + 1
            relu = isinstance(nxt(j), nn.ReLU)
            W, b = fuse_bn(m, bn)
            if isinstance(m, nn.Conv2d):
                if m.padding_mode != "zeros" or m.dilation != (1, 1) or isinstance(m.padding, str):
                    raise NotImplementedError(f"{name}: only zero padding given as ints, dilation 1")
                ops.append(Op("conv", name, W, b, tuple(m.stride), tuple(m.padding), m.groups, relu))
            else:
                ops.append(Op("linear", name, W, b, relu=relu))
            i = j + relu
        elif isinstance(m, nn.MaxPool2d):
            k = m.kernel_size if isinstance(m.kernel_size, int) else m.kernel_size[0]
            if m.stride not in (k, (k, k)) or m.padding not in (0, (0, 0)) or m.dilation not in (1, (1, 1)) \
                    or m.ceil_mode or m.kernel_size not in (k, (k, k)):
                raise NotImplementedError(f"{name}: only square, non-overlapping MaxPool2d(k) without padding")
            ops.append(Op("maxpool", name, kernel=k))
            i += 1
        elif isinstance(m, nn.Flatten):
            ops.append(Op("flatten", name))
            i += 1
        else:
            raise NotImplementedError(f"{name}: {type(m).__name__} is not supported by this reference")
    return ops


def maxpool2d(x: np.ndarray, k: int) -> np.ndarray:
    """Non-overlapping k x k max pool of (N, C, H, W), floor mode like torch; works on floats and ints alike."""
    N, C, H, W = x.shape
    Ho, Wo = H // k, W // k
    return x[:, :, :Ho * k, :Wo * k].reshape(N, C, Ho, k, Wo, k).max(axis=(3, 5))


def _flatten(x: np.ndarray) -> np.ndarray:
    """(N, C, H, W) -> (N, C*H*W) in torch's order (also for N = 0)."""
    return x.reshape(x.shape[0], int(np.prod(x.shape[1:])))


def _batches(n: int, batch_size: int):
    return [slice(i, min(i + batch_size, n)) for i in range(0, n, batch_size)] or [slice(0, 0)]


def _concat(parts: list[dict]) -> dict:
    """Concatenate per-batch dicts of {name: array or dict of arrays} along the batch axis."""
    out = {}
    for key, v in parts[0].items():
        if isinstance(v, dict):
            out[key] = _concat([p[key] for p in parts])
        elif isinstance(v, np.ndarray) and v.ndim:
            out[key] = np.concatenate([p[key] for p in parts])
        elif isinstance(v, (int, np.integer)) and not isinstance(v, bool):
            out[key] = int(sum(p[key] for p in parts))         # counters add up
        else:
            out[key] = v                                        # same for every batch (scales)
    return out


def float_forward(ops: list[Op], X, batch_size: int = 256):
    """The folded float network in float64 numpy: (logits, {op name: that op's output}), ReLUs applied."""
    def one(xb):
        acts = {}
        for op in ops:
            if op.kind == "conv":
                xb = pconv.conv2d(xb, op.weight, op.bias, op.stride, op.padding, groups=op.groups)
            elif op.kind == "linear":
                xb = xb @ op.weight.T + op.bias
            elif op.kind == "maxpool":
                xb = maxpool2d(xb, op.kernel)
            else:
                xb = _flatten(xb)
            if op.relu:
                xb = np.maximum(xb, 0.0)
            acts[op.name] = xb
        return acts

    X = np.asarray(X, dtype=np.float64)
    acts = _concat([one(X[s]) for s in _batches(len(X), batch_size)])
    return acts[ops[-1].name], acts


# --- step 2: calibrate one scale per activation tensor ------------------------------------------------------
def calibrate(ops: list[Op], calib_X, method: str = "minmax", pct: float = 99.99) -> dict:
    """Per-tensor activation scales from the float network on calib_X: {"input": s, conv/linear name: s_out}.

    method "minmax": max|x| / 127 (nothing clips); "percentile": percentile(|x|, pct) / 127 (rare outliers
    clip to 127, the rest gets finer steps). Max pool and flatten keep their input's scale.
    """
    if method == "minmax":
        cal = pq.calibrate_minmax
    elif method == "percentile":
        def cal(x):
            return pq.calibrate_percentile(x, pct)
    else:
        raise ValueError(f"method must be 'minmax' or 'percentile', got {method!r}")
    _, acts = float_forward(ops, calib_X)
    scales = {"input": cal(np.asarray(calib_X, dtype=np.float64))}
    scales.update({op.name: cal(acts[op.name]) for op in ops if op.kind in ("conv", "linear")})
    return scales


# --- step 3: quantize every conv/linear ---------------------------------------------------------------------
@dataclass
class Int8Model:
    """The integer network: ops (for geometry), one pf.quant.QuantLayer per conv/linear, the input scale."""
    ops: list[Op]
    layers: dict = field(default_factory=dict)         # op name -> QuantLayer
    s_in: float = 1.0


def quantize_model(ops: list[Op], scales: dict) -> Int8Model:
    """pf.quant.quantize_layer for each conv/linear, chaining scales: a layer's s_in is the s_out before it."""
    qm = Int8Model(ops, s_in=float(scales["input"]))
    s = qm.s_in
    for op in ops:
        if op.kind in ("conv", "linear"):
            qm.layers[op.name] = pq.quantize_layer(op.weight, op.bias, s_in=s, s_out=scales[op.name], relu=op.relu)
            s = qm.layers[op.name].s_out
    return qm


# --- step 4: run it in integers -----------------------------------------------------------------------------
def run_int8(qmodel: Int8Model, X, batch_size: int = 256):
    """int8 inference: (float logits, trace). Only integer arithmetic between quantize(X) and the logits.

    trace[name] = {"q_in": int8 input, "acc": int32 accumulators (bias added, wrapped like the hardware),
    "wrapped": how many accumulators left int32 range, "q": int8 output, "scale": its scale} for conv/linear;
    {"q", "scale"} for maxpool/flatten. The last conv/linear is not requantized: its int32 accumulators are
    the result (trace "q" is int32 then) and dequantize to logits as acc * s_in * s_w[o].
    """
    ops = qmodel.ops
    last = max(i for i, op in enumerate(ops) if op.kind in ("conv", "linear"))

    def one(xb):
        q, s, trace = pq.quantize(xb, qmodel.s_in), qmodel.s_in, {}
        for i, op in enumerate(ops):
            if op.kind in ("conv", "linear"):
                L = qmodel.layers[op.name]
                if op.kind == "conv":        # int8 x int8, exact int64 sums (+ int32 bias) ...
                    acc64 = pconv.conv2d(q, L.w_int8, L.bias_int32, op.stride, op.padding, groups=op.groups)
                else:
                    acc64 = q.astype(np.int64) @ L.w_int8.T.astype(np.int64) + L.bias_int32
                acc = pgemm.wrap_int32(acc64)                       # ... in a 32-bit accumulator
                t = {"q_in": q, "acc": acc, "wrapped": int(np.count_nonzero(acc != acc64))}
                if i == last:
                    q, s = acc, None                                # int32 result, per-channel scale
                else:
                    q, s = L.requant(acc), L.s_out                  # int8, ReLU fused into the clamp
                trace[op.name] = dict(t, q=q, scale=s)
            elif op.kind == "maxpool":
                q = maxpool2d(q, op.kernel)                         # max commutes with a positive scale
                trace[op.name] = {"q": q, "scale": s}
            else:
                q = _flatten(q)
                trace[op.name] = {"q": q, "scale": s}
        return trace

    X = np.asarray(X, dtype=np.float64)
    trace = _concat([one(X[sl]) for sl in _batches(len(X), batch_size)])
    L = qmodel.layers[ops[last].name]
    logits = pq.dequantize(trace[ops[last].name]["q"], L.s_in * L.s_w, axis=1)
    return logits, trace


def quantized_inference(model: nn.Sequential, X, calib_X, method: str = "minmax", pct: float = 99.99):
    """Run `model` in int8 on X, calibrated on calib_X: (int8 logits as float64, per-layer comparison).

    layers[name] holds the run_int8 trace entry plus "float" (the float model's output at that op, float64)
    and "int8" (the integer output dequantized: q * scale, or acc * s_in * s_w for the last layer), ready
    for error histograms: layers[name]["int8"] - layers[name]["float"].
    """
    ops = fold_model(model)
    qmodel = quantize_model(ops, calibrate(ops, calib_X, method, pct))
    logits, trace = run_int8(qmodel, X)
    _, ref = float_forward(ops, X)
    layers = {}
    for op in ops:
        t = trace[op.name]
        deq = logits if t["scale"] is None else pq.dequantize(t["q"], t["scale"])
        layers[op.name] = dict(t, float=ref[op.name], int8=deq, layer=qmodel.layers.get(op.name))
    return logits, layers


# --- python -m pytorch_fpga.nn.digits_cnn -------------------------------------------------------------------
def main(epochs: int = DEFAULT_EPOCHS, seed: int = 0, path=CHECKPOINT) -> None:
    X_train, y_train, X_test, y_test = load_digits_split()
    t0 = time.perf_counter()
    model = train(make_model(seed), X_train, y_train, epochs=epochs, seed=seed)
    dt = time.perf_counter() - t0
    float_acc = accuracy(predict(model, X_test), y_test)
    int8_acc = accuracy(quantized_inference(model, X_test, X_train)[0], y_test)
    print(f"trained {epochs} epochs in {dt:.1f} s: test accuracy float {float_acc:.2%}, int8 {int8_acc:.2%}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    print(f"wrote {path} ({path.stat().st_size / 1024:.1f} KiB)")


if __name__ == "__main__":
    main()
