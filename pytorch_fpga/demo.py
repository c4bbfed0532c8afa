"""`python -m pytorch_fpga demo`: the digits CNN offloaded to the accelerator, checked and profiled.

Loads the small CNN shipped for scikit-learn's 8x8 digits, quantizes it and offloads its layers to the
Verilated RTL of conv_accel (or another backend), then reports float vs int8-on-RTL accuracy, bit-exact
agreement with the numpy model, the per-layer profile and the projected PYNQ-Z1 latency and throughput.
"""
from __future__ import annotations

import sys
import time

import numpy as np


def _run(model, X, batch: int, desc: str):
    import torch
    from tqdm import tqdm
    outs = []
    with torch.no_grad():
        for i in tqdm(range(0, len(X), batch), desc=desc, unit="batch", leave=False, file=sys.stdout):
            outs.append(model(torch.from_numpy(X[i:i + batch])).numpy())
    return np.concatenate(outs)


def main(args) -> int:
    """Run the demo; return 0 when the RTL's results are bit-exact with the model and accuracy holds up."""
    t_start = time.perf_counter()
    import torch

    from pytorch_fpga.core.datasets import load_digits_split
    from pytorch_fpga.nn import digits_cnn, offload, profile
    from pytorch_fpga.nn.offload import choose_backend
    from pytorch_fpga.runtime import backends as pf_backends

    torch.set_num_threads(max(1, torch.get_num_threads()))
    Xtr, ytr, Xte, yte = load_digits_split()
    n = len(Xte) if args.images is None else max(1, min(args.images, len(Xte)))
    Xte, yte = Xte[:n], yte[:n]
    calib = Xtr[:args.calibration]
    backend = choose_backend(args.backend)
    print(f"pytorch_fpga demo: the digits CNN ({len(Xte)} held-out 8x8 images) offloaded to conv_accel "
          f"'{args.config}' on backend '{backend}'")
    if backend == "verilator" or (backend == "pynq" and not pf_backends.board_present()):
        print("  (the first run compiles the RTL with Verilator, ~25 s; later runs reuse it)", flush=True)
    model = digits_cnn.load_pretrained()
    float_logits = _run(model, Xte, args.batch, "float model")
    fpga = offload(model, calib, backend=backend, config=args.config)
    t0 = time.perf_counter()
    fpga_logits = _run(fpga, Xte, args.batch, f"int8 on {backend}")
    t_fpga = time.perf_counter() - t0
    ref = offload(model, calib, backend="model", config=args.config)
    ref_logits = _run(ref, Xte, args.batch, "int8 on the numpy model")

    acc_f = float((float_logits.argmax(1) == yte).mean())
    acc_q = float((fpga_logits.argmax(1) == yte).mean())
    exact = bool(np.array_equal(fpga_logits, ref_logits))
    print(f"\naccuracy  float32: {acc_f:.2%}   int8 on {backend}: {acc_q:.2%}   "
          f"({int((fpga_logits.argmax(1) != float_logits.argmax(1)).sum())} of {n} predictions differ)")
    print(f"bit-exact with the numpy model backend: {'yes' if exact else 'NO'} "
          f"(logits of all {n} images, {fpga_logits.size} values)")

    prof = profile(fpga, torch.from_numpy(Xte[:1]))
    print(f"\nper-layer profile, one image (accelerator time projected at {prof.clock_mhz:g} MHz; "
          "CPU time measured here):")
    print(prof.table())
    acc = fpga.fpga_accelerator
    batch_prof = profile(fpga, torch.from_numpy(Xte[:args.batch]))
    cyc_1 = sum(r["cycles"] for r in prof.rows)
    cyc_b = sum(r["cycles"] for r in batch_prof.rows)
    mhz = acc.cfg.clock_mhz
    print(f"\nprojected PYNQ-Z1 ({acc.cfg.name}, {acc.cfg.rows}x{acc.cfg.cols} PEs, {mhz:g} MHz): latency "
          f"{cyc_1 / mhz:.1f} us per image; throughput {len(Xte[:args.batch]) / (cyc_b / mhz) * 1e6:,.0f} "
          f"images/s in batches of {min(args.batch, n)} (accelerator only, not counting DMA set-up or the CPU)")
    sim_cycles = sum(r["cycles"] for r in batch_prof.rows) * (n / min(args.batch, n))
    print(f"wall time: {time.perf_counter() - t_start:.1f} s in all; int8 inference on {backend}: {t_fpga:.1f} s"
          + (f" (~{sim_cycles / t_fpga / 1e3:,.0f}k simulated cycles/s)" if backend == "verilator" else ""))
    ok = exact and acc_q >= acc_f - 0.015
    if not ok:
        print("FAILED: " + ("results differ from the numpy model; " if not exact else "")
              + ("int8 accuracy dropped more than 1.5 points" if acc_q < acc_f - 0.015 else ""))
    return 0 if ok else 1
