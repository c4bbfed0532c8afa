"""Backends that run conv_accel jobs: `model` (numpy, bit-exact), `verilator` (the RTL), `pynq` (board).

Pick one by name, or with the PYTORCH_FPGA_BACKEND environment variable. Torch-free.

The runtime runs on a board, so it imports nothing from the simulation layer: the simulators are plugins, named
in PLUGINS as "module:attribute" and imported only when asked for (the `verilator` backend, the virtual PYNQ
that the `pynq` backend starts off-board, and the simulator check behind `auto`).

A memory model (pytorch_fpga.sim.memory.MemoryModel: DDR bandwidth and latency behind the DMA) is passed through
`get(name, cfg, memory=...)` untouched: the simulation plugins apply it, this layer never imports it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from pytorch_fpga.contract import accel, stream_codec

ENV = "PYTORCH_FPGA_BACKEND"
NAMES = ("model", "verilator", "pynq")
# Simulation-layer plugins, imported by name on first use (never on a board unless asked for).
PLUGINS = {
    "verilator": "pytorch_fpga.sim.verilated.backend:VerilatorBackend",
    "virtual_pynq": "pytorch_fpga.sim.virtual_pynq:ensure",
    "sim_available": "pytorch_fpga.sim.tools:available",
}


def plugin(name: str):
    """The object a PLUGINS entry names, imported now."""
    import importlib
    module, attr = PLUGINS[name].split(":")
    return getattr(importlib.import_module(module), attr)


@dataclass
class JobReport:
    """What one job cost: MACs, cycles, PE utilization, bytes streamed in and out."""
    M: int
    K: int
    N: int
    macs: int
    cycles: int
    utilization: float
    bytes_in: int
    bytes_out: int
    backend: str

    @classmethod
    def make(cls, job: accel.Job, cycles: int, backend: str) -> JobReport:
        macs = job.macs
        pes = job.cfg.rows * job.cfg.cols
        return cls(job.M, job.K, job.N, macs, int(cycles), macs / (pes * cycles) if cycles else 0.0,
                   int(job.stream.size), int(job.out_bytes), backend)


class Backend:
    """Runs packed jobs; subclasses implement `_run` returning the (M x N) output and the cycle count."""
    name = "?"

    def __init__(self, cfg="z1"):
        self.cfg = accel.config(cfg)

    def _check(self, job: accel.Job) -> None:
        if job.cfg != self.cfg:
            raise ValueError(f"job was packed for config '{job.cfg.name}', this backend runs '{self.cfg.name}'")

    def run(self, job: accel.Job) -> tuple[np.ndarray, JobReport]:
        """Run one job: its output matrix (int8 or int32) and a JobReport."""
        self._check(job)
        Y, cycles = self._run(job)
        return Y, JobReport.make(job, cycles, self.name)

    def _run(self, job):  # pragma: no cover - abstract
        raise NotImplementedError

    def allocate(self, nbytes: int) -> np.ndarray:
        """A zeroed uint8 buffer for a job's stream or output that run_into can use in place (a DMA buffer on pynq)."""
        return np.zeros(int(nbytes), np.uint8)

    def run_into(self, job: accel.Job, out: np.ndarray) -> int:
        """Run a job whose stream is already packed (job.stream, from allocate()); write its output stream's bytes
        into `out` (from allocate()); return the job's cycles. The model compiler's programs replay jobs this way."""
        self._check(job)
        return int(self._run_into(job, out))

    def _run_into(self, job, out) -> int:
        data, cycles = self._run_bytes(job)
        out[:job.out_bytes] = np.frombuffer(data, np.uint8)
        return cycles

    def _run_bytes(self, job):
        """(output stream bytes, cycles) of a job."""
        Y, cycles = self._run(job)
        return stream_codec.pack_output(Y, job), cycles


class ModelBackend(Backend):
    """The numpy golden model: bit-exact with the RTL, cycles from pf.accel.cycle_model.

    It takes no memory model: its cycles stay cycle_model's prediction for an ideal stream (a beat every cycle),
    whatever memory= get() was given.
    """
    name = "model"

    def _run(self, job):
        return accel.job_golden(job), accel.cycle_model(job)["cycles"]

    def _run_bytes(self, job):
        """Decode the stream as the hardware would read it (weights and cycles once per job), run the golden model."""
        cache = job.operands.setdefault("_decoded", {})
        if "W" not in cache:
            cache.update(stream_codec.decode_params(job), cycles=accel.cycle_model(job)["cycles"])
        X = stream_codec.decode_x(job)
        Y = accel.golden(X, cache["W"], cache["bias"], cache["m"], cache["shift"], job.relu, job.out_int32)
        return stream_codec.pack_output(Y, job), cache["cycles"]


class PynqBackend(Backend):
    """The overlay through the real pynq driver stack: a PYNQ-Z1, or off-board the virtual PYNQ (pf.virtual_pynq).

    memory: a MemoryModel (pytorch_fpga.sim.memory) for the virtual PYNQ's DMA; it is set on the shared virtual
    device, so it holds for every backend using it (None leaves the device's as it is). On a board it is ignored:
    the memory there is real.
    """
    name = "pynq"

    def __init__(self, cfg="z1", overlay=None, virtual: bool | None = None, memory=None):
        super().__init__(cfg)
        if virtual is None:
            virtual = not board_present()
        self.virtual = virtual
        self.memory = memory if virtual else None
        if virtual:                                  # reuse an active virtual PYNQ of this build, else start one
            plugin("virtual_pynq")(self.cfg, memory=memory)
        self.overlay = overlay or shared_overlay()
        hw = self.overlay.accel.config()
        keys = ("rows", "cols", "x_depth", "w_depth", "acc_depth", "n_max", "out_lanes", "out_depth", "dw_lb_depth",
                "dw_ch")
        if any(getattr(hw, k) != getattr(self.cfg, k) for k in keys):
            raise RuntimeError(f"the loaded overlay is built as {hw}, not as config '{self.cfg.name}'")

    def _run(self, job):
        out, status, counters = self.overlay.run_job(job)
        return accel.unpack_output(out, job), counters["CYCLES"]

    def allocate(self, nbytes: int):
        """A contiguous DMA buffer on the overlay's device (the DMA reads and writes it in place)."""
        import pynq
        buf = pynq.allocate((int(nbytes),), dtype=np.uint8, target=self.overlay.device)
        buf[:] = 0
        return buf

    def _run_into(self, job, out) -> int:
        _, status, counters = self.overlay.run_job(job, out=out)       # the DMA writes `out` in place
        return counters["CYCLES"]


def shared_overlay():
    """The conv_accel overlay on the active pynq device: downloaded once, then shared by every backend and model
    (a second pf.offload does not reload the bitstream under the first one)."""
    import pynq

    from pytorch_fpga.runtime import pynq_driver
    dev = pynq.Device.active_device
    ol = getattr(dev, "_pytorch_fpga_overlay", None)
    if ol is None or not ol.is_loaded():
        ol = pynq_driver.ConvAccelOverlay(device=dev)
        dev._pytorch_fpga_overlay = ol
    return ol


def board_present() -> bool:
    """True on a PYNQ board (pynq installed and it finds a device)."""
    import warnings
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")          # pynq warns "No devices found" off-board
            import pynq
            return bool(pynq.Device.devices)
    except Exception:                                # no pynq, or pynq without a device
        return False


_announced = set()


def auto() -> str:
    """What backend 'auto' means here: 'pynq' on a board, else 'pynq' on the virtual PYNQ (pynq installed and
    Verilator can build), else 'verilator', else 'model'. Says which it picked, once per process (on stderr).
    """
    import importlib.util
    import shutil
    import sys
    missing = [what for what, ok in (("Verilator", plugin("sim_available")("verilator")),
                                     ("a C++ compiler (g++)", shutil.which("g++") or shutil.which("c++")),
                                     ("make", shutil.which("make"))) if not ok]
    name, why = "model", f"the numpy golden model; the simulators need {', '.join(missing)} (apt-get install " \
                         "g++ make; pip install -r requirements.txt)"
    if board_present():
        name, why = "pynq", "a PYNQ board"
    elif not missing:
        if importlib.util.find_spec("pynq") is not None:
            name, why = "pynq", "the virtual PYNQ: pynq's driver stack on the Verilated RTL"
        else:
            name, why = "verilator", "the Verilated RTL; install pynq for the virtual PYNQ"
    if name not in _announced:
        print(f"pytorch_fpga: backend 'auto' picked '{name}' ({why})", file=sys.stderr)
        _announced.add(name)
    return name


def get(name: str | None = None, cfg="z1", memory=None) -> Backend:
    """A backend by name ('model', 'verilator', 'pynq'); default: $PYTORCH_FPGA_BACKEND, else 'model'.

    memory: a pytorch_fpga.sim.memory.MemoryModel for the simulated stream (verilator, and pynq on the virtual
    PYNQ); the model backend ignores it (its cycles assume an ideal stream), a board has real memory."""
    name = name or os.environ.get(ENV) or "model"
    if name == "model":
        return ModelBackend(cfg)
    if name == "verilator":
        return plugin("verilator")(cfg, memory=memory)
    if name == "pynq":
        return PynqBackend(cfg, memory=memory)
    if name == "auto":
        return get(auto(), cfg, memory)
    raise ValueError(f"unknown backend {name!r} (from the argument or ${ENV}); choose one of {NAMES}")
