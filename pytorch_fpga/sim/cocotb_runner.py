"""Build and run cocotb tests on Icarus or Verilator through cocotb_tools.runner, one build dir per config.

run() returns the JUnit results.xml (results_table() prints it); run_with_waves() also returns a VCD dump, which
pf.viz.waves reads and draws.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from pytorch_fpga.sim import tools

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


def rtl_hash() -> str:
    """SHA-256 of rtl/ (sources and include files): the runners track only the listed sources' timestamps."""
    h = hashlib.sha256()
    for p in sorted(tools.RTL_DIR.glob("*.v*")):
        h.update(p.name.encode() + p.read_bytes())
    return h.hexdigest()


def _sources_changed(bdir: Path, new: str) -> bool:
    """True when rtl/ differs from what the last successful build in bdir compiled (or nothing built yet)."""
    stamp = bdir / ".rtl_hash"
    return not stamp.exists() or stamp.read_text() != new


def _build_and_test(runner, get_results, toplevel, modules, test_module, sim, parameters, bdir, test_dir,
                    testcase, extra_env, waves, seed, quiet) -> Path:
    new = rtl_hash()
    stale = _sources_changed(bdir, new)
    if stale:                                    # forget the old build until the new one has succeeded
        (bdir / ".rtl_hash").unlink(missing_ok=True)
    runner.build(sources=tools.rtl_sources(*modules), always=stale, hdl_toplevel=toplevel,
                 parameters=parameters, build_dir=bdir, includes=[tools.RTL_DIR], timescale=TIMESCALE, waves=waves,
                 log_file=bdir / "build.log" if quiet else None)
    (bdir / ".rtl_hash").write_text(new)       # only once the build succeeded
    xml = bdir / f"results_{test_module}{'_' + testcase if testcase else ''}.xml"
    # cocotb's runner hands this process's sys.path to the simulator's Python: put test_dir on it meanwhile
    path = ([str(Path(test_dir).resolve())] if test_dir else []) + [str(tools.REPO_ROOT)]   # + tb.common
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


def run_with_waves(toplevel: str, modules: list[str], test_module: str, sim: str = "verilator",
                   parameters: dict | None = None, test_dir=None, testcase: str | None = None,
                   extra_env: dict | None = None, seed: int | None = None, quiet: bool = True,
                   name: str | None = None) -> Path:
    """run() with waves=True; returns the path of the VCD the simulation dumped.

    Same arguments as run(). A --trace build differs from the plain one, so it gets its own directory
    (build_dir(..., waves=True)); the simulation runs there and its dump.vcd is renamed to <name>.vcd (default:
    waves_<test_module>[_<testcase>]) so a later run does not overwrite a file being read. Verilator only:
    cocotb's Icarus runner dumps FST (`vvp -fst`), and pf.viz.waves reads VCD.
    """
    if sim != "verilator":
        raise ValueError(f"run_with_waves needs sim='verilator': cocotb's {sim} runner dumps FST (vvp -fst), "
                         "and vcdvcd reads VCD only")
    xml = run(toplevel, modules, test_module, sim, parameters=parameters, test_dir=test_dir, testcase=testcase,
              extra_env=extra_env, waves=True, seed=seed, quiet=quiet)
    dump = Path(xml).parent / "dump.vcd"
    if not dump.is_file():
        raise FileNotFoundError(f"the simulation left no {dump.name} in {dump.parent}")
    out = dump.with_name(f"{name or 'waves_' + test_module + ('_' + testcase if testcase else '')}.vcd")
    os.replace(dump, out)
    return out


def results_table(xml) -> str:
    """PASS/FAIL per test of a cocotb results.xml (JUnit), one line each, then TESTS=n PASS=p FAIL=f."""
    lines, ntests, nfailed = [], 0, 0
    for case in ET.parse(xml).iter("testcase"):
        failed = case.find("failure") is not None or case.find("error") is not None
        ntests, nfailed = ntests + 1, nfailed + failed
        lines.append(f"{'FAIL' if failed else 'PASS'}  {case.get('classname')}.{case.get('name')}")
    return "\n".join(lines + [f"TESTS={ntests} PASS={ntests - nfailed} FAIL={nfailed}"])


def repo_relative(path) -> str:
    """`path` relative to the repository root, as text (output that does not depend on where the clone lives)."""
    return Path(path).resolve().relative_to(tools.REPO_ROOT).as_posix()
