"""scipy's second-order-section filter without `import scipy.signal`.

Importing the package `scipy.signal` costs the worker about 77 MB of RSS (it imports
scipy.special, scipy.linalg and more); its compiled kernel alone costs 2 MB. The kernel is
loaded from its file; if a scipy release moves it, the public `scipy.signal.sosfilt` is used.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np


def _kernel():
    try:
        import scipy

        folder = Path(scipy.__path__[0]) / "signal"
        path = next(folder.glob("_sosfilt.*"))
        spec = importlib.util.spec_from_file_location("scipy.signal._sosfilt", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module._sosfilt
    except (ImportError, StopIteration, AttributeError, OSError):
        return None


_SOSFILT = _kernel()


def sosfilt(sos: np.ndarray, x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Filter `x` along `axis` with second-order sections, from rest; returns a new array
    of x's float dtype (float32 stays float32)."""
    moved = np.moveaxis(x, axis, -1)
    y, _ = sosfilt_2d(sos, moved.reshape(-1, moved.shape[-1]))
    return np.moveaxis(y.reshape(moved.shape), -1, axis)


def sosfilt_2d(sos: np.ndarray, signals: np.ndarray, zi: np.ndarray | None = None):
    """(filtered, final state) of (n_signals, frames); `zi` (n_signals, sections, 2) is the
    state to start from (direct form II transposed), rest when None."""
    dtype = signals.dtype if signals.dtype in (np.float32, np.float64) else np.float64
    state = (
        np.zeros((signals.shape[0], sos.shape[0], 2), dtype)
        if zi is None
        else np.array(zi, dtype, order="C")
    )
    if _SOSFILT is None:
        from scipy.signal import sosfilt as public

        return public(sos, signals, axis=-1, zi=state)
    out = np.array(signals, dtype=dtype, order="C")  # filtered in place
    _SOSFILT(np.ascontiguousarray(sos, dtype), out, state)
    return out, state
