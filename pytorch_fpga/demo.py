"""`python -m pytorch_fpga demo`: the digits CNN compiled for the accelerator, checked and profiled.

Compiles the small CNN shipped for scikit-learn's 8x8 digits with pf.compile (capture, passes, int8 calibration,
a program of pre-packed jobs), runs the held-out images on a backend (the virtual PYNQ on the Verilated RTL by
default), and reports float vs int8 accuracy, bit-exact agreement with the numpy model, where each op runs, and
the projected end-to-end time: accelerator cycles at the clock + estimated driver set-up + host time measured
here, each shown on its own.
"""
from __future__ import annotations

import sys
import time

import numpy as np


def _run(cm, X, batch: int, desc: str):
    from tqdm import tqdm
    return np.concatenate([cm.run(X[i:i + batch])
                           for i in tqdm(range(0, len(X), batch), desc=desc, unit="batch", leave=False,
                                         file=sys.stdout)])


def main(args) -> int:
    """Run the demo; return 0 when the backend's results are bit-exact with the model and accuracy holds up."""
    t_start = time.perf_counter()
    import torch

    from pytorch_fpga.core.datasets import load_digits_split
    from pytorch_fpga.nn import compiled_model, digits_cnn
    from pytorch_fpga.nn.offload import choose_backend
    from pytorch_fpga.runtime import backends as pf_backends

    torch.set_num_threads(max(1, torch.get_num_threads()))
    Xtr, ytr, Xte, yte = load_digits_split()
    n = len(Xte) if args.images is None else max(1, min(args.images, len(Xte)))
    Xte, yte = Xte[:n], yte[:n]
    backend = choose_backend(args.backend)
    print(f"pytorch_fpga demo: the digits CNN ({n} held-out 8x8 images) compiled for conv_accel '{args.config}' "
          f"on backend '{backend}'")
    if backend == "verilator" or (backend == "pynq" and not pf_backends.board_present()):
        print("  (the first run compiles the RTL with Verilator, ~25 s; later runs reuse it)", flush=True)
    model = digits_cnn.load_pretrained()
    with torch.no_grad():
        float_logits = model(torch.from_numpy(Xte)).numpy()
    t0 = time.perf_counter()
    cm = compiled_model.compile(model, Xtr[:args.calibration], backend=backend, config=args.config)
    t_compile = time.perf_counter() - t0
    t0 = time.perf_counter()
    fpga_logits = _run(cm, Xte, args.batch, f"int8 on {backend}")
    t_fpga = time.perf_counter() - t0
    ref = compiled_model.compile(model, Xtr[:args.calibration], backend="model", config=args.config)
    ref_logits = _run(ref, Xte, args.batch, "int8 on the numpy model")

    acc_f = float((float_logits.argmax(1) == yte).mean())
    acc_q = float((fpga_logits.argmax(1) == yte).mean())
    exact = bool(np.array_equal(fpga_logits, ref_logits))
    print(f"\naccuracy  float32: {acc_f:.2%}   int8 on {backend}: {acc_q:.2%}   "
          f"({int((fpga_logits.argmax(1) != float_logits.argmax(1)).sum())} of {n} predictions differ)")
    print(f"bit-exact with the numpy model backend: {'yes' if exact else 'NO'} "
          f"(logits of all {n} images, {fpga_logits.size} values)")
    print("\nwhere each op runs (pf.compile's placement):")
    print(cm.placement())

    batch = min(args.batch, n)
    ref.run(Xte[:batch])                            # the numpy model's program: host time without a simulator
    prof = ref.profile(Xte[:batch])
    print(f"\none batch of {batch} images, step by step (accelerator time projected from the cycle count at "
          f"{prof.clock_mhz:g} MHz; set-up estimated; host time measured here, {prof.host_cpu}):")
    print(prof.table())
    e2e = prof.end_to_end_us
    print(f"\nprojected PYNQ-Z1 ({cm.cfg.name}, {cm.cfg.rows}x{cm.cfg.cols} PEs, {prof.clock_mhz:g} MHz), per batch "
          f"of {batch}:\n  accelerator {prof.accel_us:,.0f} us (projected)  +  DMA/driver set-up "
          f"{prof.setup_us:,.0f} us (estimated)  +  host {prof.host_us:,.0f} us (measured here; a Cortex-A9 is "
          f"slower)\n  = {e2e:,.0f} us end to end: {batch / e2e * 1e6:,.0f} images/s projected "
          f"(the accelerator alone would be {batch / prof.accel_us * 1e6:,.0f}/s: not the system's figure)")
    print(f"\nwall time here: {time.perf_counter() - t_start:.1f} s in all; pf.compile {t_compile:.1f} s; int8 "
          f"inference on {backend}: {t_fpga:.1f} s")
    ok = exact and acc_q >= acc_f - 0.015
    if not ok:
        print("FAILED: " + ("results differ from the numpy model; " if not exact else "")
              + ("int8 accuracy dropped more than 1.5 points" if acc_q < acc_f - 0.015 else ""))
    return 0 if ok else 1
