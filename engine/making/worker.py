"""The loop worker process: its workshop, and how a made clip travels back to the daemon
(through a shared-memory file, not a pickle)."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import math
import mmap
import os
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from engine.making.workshop import MIX_DTYPE, Made, Workshop
from engine.score.music import Clip, Loop

log = logging.getLogger("segue.pool")


_workshop: Workshop | None = None


def _worker_init(soundfont: str, model: str | None, use_model: bool,
                 warm_graph: str | None = None) -> None:  # fmt: skip
    global _workshop
    parent = os.getppid()

    def exit_with_parent() -> None:
        # A daemon killed outright must not leave its worker behind.
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=exit_with_parent, name="segue-worker-watch", daemon=True).start()
    # Writing loops must never take the CPU from the audio thread: nice 10. The worker started
    # before the music (the one that warms the initial state's sounds) is the music's start:
    # nothing plays until its first loop, so it takes its share of the CPU until it has
    # shipped that loop (`_worker_call`); every later worker is nice from the start.
    global _nice_after_first
    _nice_after_first = warm_graph is not None
    if not _nice_after_first:
        os.nice(NICE)
    _workshop = Workshop(soundfont, model, use_model, warm_graph)


NICE = 10
_nice_after_first = False


def _worker_call(method: str, *args) -> Made:
    assert _workshop is not None
    global _nice_after_first
    try:
        made = getattr(_workshop, method)(*args)
        shipped = replace(made, clip=_ship(made.clip))
        del made
    finally:
        if _nice_after_first:  # the first loop is made (or failed): the worker steps back
            _nice_after_first = False
            os.nice(NICE)
    _release_free_memory()
    return shipped


def _release_free_memory() -> None:
    """Hand the heap's free pages back: a render's temporaries would otherwise keep the
    worker's RSS up to 40 MB higher (measured), growing as heaps fragment."""
    global _LIBC
    if _LIBC is None:
        try:
            _LIBC = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        except OSError:
            _LIBC = False
    if _LIBC:
        _LIBC.malloc_trim(0)


_LIBC = None


# Clips cross from the worker as files in shared memory, mapped (not copied) by the daemon:
# unpickling 8 MB of stems would hold the daemon's GIL for milliseconds, and the audio
# callback is Python.
_SHM_DIR = Path("/dev/shm") if Path("/dev/shm").is_dir() else Path(tempfile.gettempdir())


_CLIP_PREFIX = "segue-clip-"


@dataclass(frozen=True)
class ShippedClip:
    """A clip whose audio waits in a file: stems (`dtype`) then mix (float32), native order."""

    path: str
    loop: Loop
    parts: tuple[str, ...]
    stems_shape: tuple[int, ...]
    loudness_lufs: float
    peak: float
    dtype: str  # the stems' numpy dtype, as stored


def _ship(clip: Clip) -> ShippedClip:
    path = _SHM_DIR / f"{_CLIP_PREFIX}{os.getppid()}-{uuid.uuid4().hex}"
    with open(path, "wb") as f:
        np.ascontiguousarray(clip.stems).tofile(f)  # as stored (STORAGE_DTYPE)
        np.ascontiguousarray(clip.mix, dtype=MIX_DTYPE).tofile(f)
    return ShippedClip(str(path), clip.loop, clip.parts, tuple(clip.stems.shape),
                       clip.loudness_lufs, clip.peak, clip.stems.dtype.str)  # fmt: skip


def _land(shipped: ShippedClip) -> Clip:
    """Map a shipped clip and unlink its file: the mapping keeps the memory until the clip's
    arrays are dropped. No MAP_POPULATE: populating 8 MB holds the process's memory-map
    lock for a millisecond or more, stalling the audio thread; the few minor faults per
    block that playback takes instead cost microseconds."""
    fd = os.open(shipped.path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        mapping = mmap.mmap(fd, size, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ)
    finally:
        os.close(fd)
        os.unlink(shipped.path)
    stems_dtype = np.dtype(shipped.dtype)
    count = math.prod(shipped.stems_shape)
    stems = np.frombuffer(mapping, stems_dtype, count).reshape(shipped.stems_shape)
    mix = np.frombuffer(mapping, MIX_DTYPE, offset=count * stems_dtype.itemsize)
    mix = mix.reshape(shipped.stems_shape[1:])
    return Clip(shipped.loop, shipped.parts, stems, mix, shipped.loudness_lufs, shipped.peak)


def remove_stale_clips() -> int:
    """Delete clip files left by daemons that died before mapping them."""
    removed = 0
    for path in _SHM_DIR.glob(_CLIP_PREFIX + "*"):
        pid = path.name[len(_CLIP_PREFIX) :].split("-")[0]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def _worker_describe() -> tuple[str, str]:
    assert _workshop is not None
    return _workshop.generator_name, _workshop.model_problem


def _worker_synth() -> dict:
    """The synthesizer and SoundFont the worker renders with (for /segue/status)."""
    assert _workshop is not None
    return _workshop.synth.describe()
