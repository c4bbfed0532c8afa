"""Fixtures shared by the library's tests."""
import sys

import numpy as np
import pytest


@pytest.fixture
def rng(request):
    """A numpy Generator seeded from the test's name: reproducible, different per test."""
    return np.random.default_rng(sum(map(ord, request.node.nodeid)))


@pytest.fixture(autouse=True)
def _close_figures():
    """Close every matplotlib figure a test opened (only when matplotlib was imported)."""
    yield
    if "matplotlib.pyplot" in sys.modules:
        sys.modules["matplotlib.pyplot"].close("all")
