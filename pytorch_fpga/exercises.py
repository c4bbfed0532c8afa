"""Self-checks for the notebooks' exercises: compare a learner's answer with the library's own result."""
from __future__ import annotations

import numpy as np


def check(name: str, answer, expected, rtol: float = 0.0, atol: float = 0.0, hint: str = "") -> bool | None:
    """Print whether `answer` matches `expected` (exactly, or within rtol/atol); None while unanswered.

    Never raises, so a notebook with unanswered exercises still runs top to bottom.
    """
    if answer is None or answer is ...:
        print(f"{name}: not answered yet (replace the None above with your answer and re-run this cell)")
        return None
    try:
        a, e = np.asarray(answer), np.asarray(expected)
        ok = a.shape == e.shape and (np.array_equal(a, e) if rtol == atol == 0
                                     else bool(np.allclose(a, e, rtol=rtol, atol=atol)))
    except (TypeError, ValueError):
        ok = False
    print(f"{name}: {'correct' if ok else 'not quite'}" + ("" if ok or not hint else f" (hint: {hint})"))
    return ok
