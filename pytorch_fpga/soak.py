"""`python -m pytorch_fpga soak`: random jobs across the whole job space, on every backend, against an oracle."""
from __future__ import annotations

import json
import time

import numpy as np

from pytorch_fpga.contract import accel, jobspace
from pytorch_fpga.runtime import backends as pf_backends

BACKENDS = ("model", "verilator", "pynq")


def oracle(job: accel.Job) -> np.ndarray:
    """The job's output computed directly in int64 from the spec (independent of pf.gemm and pf.quant)."""
    ops = job.operands
    acc = ops["X"].astype(np.int64) @ ops["W"].astype(np.int64) + ops["bias"].astype(np.int64)
    acc = (acc + 2**31) % 2**32 - 2**31                       # the int32 accumulator wraps
    if job.out_int32:
        return acc.astype(np.int32)
    m, shift = ops["m"].astype(np.int64), ops["shift"].astype(np.int64)
    y = (acc * m + (np.int64(1) << (shift - 1))) >> shift     # |acc * m| < 2**62: no int64 overflow
    y = np.clip(y, -128, 127)
    return (np.maximum(y, 0) if job.relu else y).astype(np.int8)


def job_rng(seed: int, index: int) -> np.random.Generator:
    """The generator of job `index` of a soak with `seed`: any one job can be replayed alone."""
    return np.random.default_rng([seed, index])


def run(jobs: int = 1000, seed: int = 0, config="sim8", names=BACKENDS, max_macs: int | None = 2_000_000,
        progress: bool = True) -> dict:
    """Run `jobs` random jobs on each backend in `names`; count mismatches against `oracle`."""
    cfg = accel.config(config)
    runners = {n: pf_backends.get(n, cfg) for n in names}
    stats = {n: {"jobs": 0, "mismatches": 0, "seconds": 0.0} for n in names}
    failures, shapes, cyc_err = [], [], 0.0
    it = range(jobs)
    if progress:
        from tqdm import tqdm
        it = tqdm(it, desc=f"soak on {cfg.name} ({', '.join(names)})", unit="job", mininterval=1.0)
    for i in it:
        rng = job_rng(seed, i)
        shape = jobspace.sample(rng, cfg, max_macs=max_macs)
        job = jobspace.job(rng, shape, cfg)
        want = oracle(job)
        shapes.append(shape)
        for name, backend in runners.items():
            t0 = time.perf_counter()
            Y, rep = backend.run(job)
            stats[name]["seconds"] += time.perf_counter() - t0
            stats[name]["jobs"] += 1
            if not np.array_equal(Y, want):
                stats[name]["mismatches"] += 1
                if len(failures) < 20:
                    failures.append({"backend": name, "index": i, "shape": shape.__dict__,
                                     "wrong_values": int(np.sum(Y != want))})
            elif name == "verilator":
                model = accel.cycle_model(job)["cycles"]
                cyc_err = max(cyc_err, abs(model - rep.cycles) / rep.cycles)
    for s in stats.values():
        s["jobs_per_s"] = s["jobs"] / s["seconds"] if s["seconds"] else None
    return {"config": cfg.name, "seed": seed, "jobs": jobs, "max_macs": max_macs, "backends": stats,
            "mismatches": sum(s["mismatches"] for s in stats.values()), "failures": failures,
            "coverage": jobspace.coverage(shapes, cfg), "max_cycle_model_error": cyc_err}


def report(rec: dict) -> str:
    """The soak's result as text: per backend jobs, mismatches and jobs/s (measured here), then coverage."""
    lines = [f"soak: {rec['jobs']} random jobs on '{rec['config']}' (seed {rec['seed']}), against the int64 oracle",
             f"{'backend':10s} {'jobs':>8s} {'mismatches':>11s} {'jobs/s (measured here)':>24s}"]
    for name, s in rec["backends"].items():
        lines.append(f"{name:10s} {s['jobs']:8d} {s['mismatches']:11d} {s['jobs_per_s'] or 0:24.1f}")
    missed = [b for b, n in rec["coverage"].items() if n == 0]
    lines.append("corners hit: " + ", ".join(f"{b} {n}" for b, n in rec["coverage"].items()))
    if missed:
        lines.append("corners MISSED: " + ", ".join(missed))
    if "verilator" in rec["backends"]:
        lines.append(f"cycle model vs RTL: worst error {rec['max_cycle_model_error']:.2%}")
    for f in rec["failures"]:
        lines.append(f"MISMATCH on {f['backend']}: job {f['index']} {f['shape']} ({f['wrong_values']} values); "
                     f"replay with pytorch_fpga.soak.job_rng({rec['seed']}, {f['index']})")
    lines.append(f"{rec['mismatches']} mismatches")
    return "\n".join(lines)


def main(args) -> int:
    """CLI entry: run, print the report, write JSON; exit 1 on any mismatch."""
    names = tuple(n.strip() for n in args.backends.split(",") if n.strip())
    unknown = [n for n in names if n not in BACKENDS]
    if unknown:
        raise SystemExit(f"unknown backend(s) {unknown}: choose from {', '.join(BACKENDS)} (comma-separated)")
    if args.jobs < 1:
        raise SystemExit("--jobs must be at least 1")
    rec = run(args.jobs, args.seed, args.config, names, progress=not args.quiet)
    print(report(rec))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rec, fh, indent=1)
        print(f"wrote {args.json}")
    return 1 if rec["mismatches"] else 0
