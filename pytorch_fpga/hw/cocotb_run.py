"""Build and run cocotb tests on Icarus or Verilator through cocotb_tools.runner, one build dir per config."""
from __future__ import annotations

import contextlib
import hashlib
import fcntl
import os
import sys
from pathlib import Path

from . import tools

TIMESCALE = ("1ns", "1ps")


def build_dir(toplevel: str, sim: str, parameters: dict | None = None, waves: bool = False) -> Path:
    """A build directory unique to (toplevel, simulator, parameters, waves): build/<sim>/<toplevel>[_<params>][_waves].

    A build with waves (Verilator's --trace) gets its own directory so it does not replace the plain one.
    """
    tag = "_".join(f"{k}{v}" for k, v in sorted((parameters or {}).items()))
    return tools.BUILD_DIR / sim / (toplevel + (f"_{tag}" if tag else "") + ("_waves" if waves else ""))


def run(toplevel: str, modules: list[str], test_module: str, sim: str, parameters: dict | None = None,
        test_dir: str | os.PathLike | None = None, testcase: str | None = None, extra_env: dict | None = None,
        waves: bool = False, seed: int | None = None, quiet: bool = False) -> Path:
    """Build rtl/<modules>.v for `toplevel` with `sim` and run the cocotb `test_module`; raise on failure.

    Returns the results.xml path. `test_dir` holds `test_module` (it goes on the simulator's Python path; the
    simulation itself runs in the build directory, where results, logs and dump.vcd land).
    quiet=True sends the build and simulator output to files in the build directory instead of the console.
    """
    from cocotb_tools.runner import get_results, get_runner

    tools.require(sim)
    parameters = dict(parameters or {})
    bdir = build_dir(toplevel, sim, parameters, waves)
    bdir.mkdir(parents=True, exist_ok=True)
    with _locked(bdir):  # tests, notebooks and the demo may share a build directory
        return _build_and_test(get_runner(sim), get_results, toplevel, modules, test_module, sim, parameters,
                               bdir, test_dir, testcase, extra_env, waves, seed, quiet)


@contextlib.contextmanager
def _locked(bdir: Path):
    """An exclusive lock on a build directory (released when the block ends, or the process dies)."""
    with open(bdir / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _sources_changed(bdir: Path) -> bool:
    """True when rtl/ (sources and include files) changed since the last build in bdir; records the new hash.

    The runners track only the listed sources' timestamps, not include files, so a hash decides instead.
    """
    h = hashlib.sha256()
    for p in sorted(tools.RTL_DIR.glob("*.v*")):
        h.update(p.name.encode() + p.read_bytes())
    stamp = bdir / ".rtl_hash"
    new = h.hexdigest()
    changed = not stamp.exists() or stamp.read_text() != new
    stamp.write_text(new)
    return changed


def _build_and_test(runner, get_results, toplevel, modules, test_module, sim, parameters, bdir, test_dir,
                    testcase, extra_env, waves, seed, quiet) -> Path:
    runner.build(sources=tools.rtl_sources(*modules), always=_sources_changed(bdir), hdl_toplevel=toplevel,
                 parameters=parameters, build_dir=bdir, includes=[tools.RTL_DIR], timescale=TIMESCALE, waves=waves,
                 log_file=bdir / "build.log" if quiet else None)
    xml = bdir / f"results_{test_module}{'_' + testcase if testcase else ''}.xml"
    # cocotb's runner hands this process's sys.path to the simulator's Python: put test_dir on it meanwhile
    path = [str(Path(test_dir).resolve())] if test_dir else []
    sys.path[:0] = path
    try:
        runner.test(test_module=test_module, hdl_toplevel=toplevel, build_dir=bdir, test_dir=bdir,
                    testcase=testcase, extra_env=dict(extra_env or {}), results_xml=str(xml), waves=waves,
                    timescale=TIMESCALE, seed=seed, log_file=bdir / f"{test_module}.log" if quiet else None)
    except SystemExit as e:  # the runner exits on a failed test; turn that into a readable error
        where = bdir / f"{test_module}.log" if quiet else "the log above"
        raise AssertionError(f"cocotb {test_module} on {sim} ({toplevel} {parameters}) failed; "
                             f"see {where} and {xml}") from e
    finally:
        for p in path:
            sys.path.remove(p)
    ntests, nfailed = get_results(xml)
    if ntests == 0 or nfailed:
        raise AssertionError(f"cocotb {test_module} on {sim}: {nfailed} of {ntests} tests failed ({xml})")
    return xml
