"""The compiler's part of `python -m pytorch_fpga bench`: compile time and host work per inference, as ratios.

For each model: pf.compile's wall time (measured here), the projected accelerator time at the clock, the
estimated driver set-up, and the host time per inference measured here (everything outside the backend's job
execution: input quantization, X tiles into the streams, outputs out, int8 host kernels), the median of a few
runs on the numpy model backend. The goal: host <= 10% of the accelerator's projected time.
"""
from __future__ import annotations

import platform
import time

import numpy as np

GOAL = 0.10           # host time / projected accelerator time
RUNS = 5


def _models():
    """(name, model, calibration inputs, inference batch) of the benchmark."""
    import torch

    from pytorch_fpga.core.datasets import load_digits_split
    from pytorch_fpga.nn import digits_cnn, models
    Xtr, _, Xte, _ = load_digits_split()
    yield "digits_cnn", digits_cnn.load_pretrained(), Xtr[:300], Xte[:150]
    for name in ("resnet18", "mobilenet_v2"):
        torch.manual_seed(0)
        x = torch.randn(2, 3, 224, 224)
        m = models.random_weights(getattr(models, name)(), 0, example_input=x)
        yield name, m, x.numpy(), x[:1].numpy()


def run(backend: str = "model", config="z1", progress: bool = True) -> dict:
    """Compile each model, run it RUNS times, and record the median step times."""
    from pytorch_fpga.nn.compiled_model import compile as pf_compile
    rows = []
    items = list(_models())
    if progress:
        from tqdm import tqdm
        items = tqdm(items, desc="bench: compiler", unit="model")
    for name, model, calib, X in items:
        t0 = time.perf_counter()
        cm = pf_compile(model, calib, backend=backend, config=config)
        compile_s = time.perf_counter() - t0
        cm.run(X)                                   # lowers and allocates the program for this batch
        profs = [cm.profile(X) for _ in range(RUNS)]
        host = float(np.median([p.host_us for p in profs]))
        p = profs[0]
        rows.append({"model": name, "batch": len(X), "jobs": sum(r["jobs"] for r in p.rows),
                     "compile_s_measured": compile_s, "accel_us_projected": p.accel_us,
                     "setup_us_estimated": p.setup_us, "host_us_measured_median": host,
                     "host_over_accel": host / p.accel_us, "goal_host_over_accel": GOAL,
                     "end_to_end_us_projected": p.accel_us + p.setup_us + host,
                     "images_per_s_end_to_end": len(X) / (p.accel_us + p.setup_us + host) * 1e6,
                     "images_per_s_accelerator_only": len(X) / p.accel_us * 1e6})
    return {"backend": backend, "config": config, "host_cpu": platform.machine(), "runs": RUNS, "models": rows}


def table(record: dict) -> str:
    """The compiler benchmark as text; each time column says where it comes from."""
    lines = [f"compiler (backend '{record['backend']}', config {record['config']}; host measured on "
             f"{record['host_cpu']}, median of {record['runs']} runs; accelerator projected at the clock; set-up "
             "estimated)",
             f"{'model':13s} {'batch':>5s} {'jobs':>5s} {'compile s':>9s} {'accel us':>10s} {'setup us':>9s} "
             f"{'host us':>9s} {'host/accel':>10s} {'img/s e2e':>10s}"]
    for r in record["models"]:
        ok = "ok" if r["host_over_accel"] <= r["goal_host_over_accel"] else "over goal"
        lines.append(f"{r['model']:13s} {r['batch']:5d} {r['jobs']:5d} {r['compile_s_measured']:9.1f} "
                     f"{r['accel_us_projected']:10,.0f} {r['setup_us_estimated']:9,.0f} "
                     f"{r['host_us_measured_median']:9,.0f} {r['host_over_accel']:9.1%} "
                     f"{r['images_per_s_end_to_end']:10,.1f}  ({ok}: goal <= {r['goal_host_over_accel']:.0%})")
    return "\n".join(lines)
