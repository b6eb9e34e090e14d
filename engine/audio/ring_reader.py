"""The consumer end of the shared-memory ring (the layout and protocol: engine/audio/ring.py),
for the device host, tests and Python hosts."""

from __future__ import annotations

import os
import time

import numpy as np

from engine.audio.ring import (
    _R,
    _W,
    HEADER_BYTES,
    HEARTBEAT_TIMEOUT_NS,
    MAGIC,
    SAMPLE_BYTES,
    STATE_NAMES,
    STATE_REPLACED,
    STATE_RUNNING,
    VERSION,
    RingError,
    RingStatus,
    _Mapping,
    _open_existing,
    check_name,
    segment_path,
)


class RingReader:
    """The consumer end, for tests and Python hosts. One reader per segment.

    `read` is the consumer's whole protocol: load the write index, copy, publish the read
    index; short reads are filled with silence and counted in the shared header.
    """

    def __init__(self, name: str) -> None:
        self.name = check_name(name)
        self.path = segment_path(name)
        self.frames_read = 0
        self.reopens = 0
        self._map: _Mapping | None = None
        self._open()

    def _open(self) -> None:
        existing = _open_existing(self.path)
        if existing is None:
            raise RingError(
                f"no Segue ring named {self.name!r} (is `segue run --output "
                f"shm:{self.name}` running?)"
            )
        fd, size = existing
        try:
            if size < HEADER_BYTES:
                raise RingError(f"{self.path} is not a Segue ring (too small)")
            mapping = _Mapping(fd, size)
        finally:
            os.close(fd)
        if mapping.get("magic") != MAGIC:
            mapping.close()
            raise RingError(f"{self.path} is not a Segue ring (bad magic)")
        if mapping.get("version") != VERSION:
            version = mapping.get("version")
            mapping.close()
            raise RingError(f"{self.path} has ring version {version}, this reader reads {VERSION}")
        channels = mapping.get("channels")
        capacity = mapping.get("capacity_frames")
        if size < mapping.get("data_offset") + capacity * channels * SAMPLE_BYTES:
            mapping.close()
            raise RingError(f"{self.path} is shorter than its header says")
        self._map = mapping
        self._data = mapping.data_view()
        self.sample_rate = mapping.get("sample_rate")
        self.channels = channels
        self.capacity_frames = capacity

    def read(self, frames: int) -> np.ndarray:
        """Return (frames, channels) float32; silence where the producer had nothing."""
        out = np.zeros((frames, self.channels), dtype=np.float32)
        self.read_into(out)
        return out

    def read_into(self, out: np.ndarray) -> int:
        """Fill `out` (frames, channels) float32; return the frames that came from the ring."""
        header = self._map.header
        frames = out.shape[0]
        write_index = int(header[_W])  # load the write index before touching data
        read_index = int(header[_R])
        available = min(max(0, write_index - read_index), self.capacity_frames)
        got = min(frames, available)
        start = read_index % self.capacity_frames
        first = min(got, self.capacity_frames - start)
        np.copyto(out[:first], self._data[start : start + first])
        if first < got:
            np.copyto(out[first:got], self._data[: got - first])
        header[_R] = read_index + got  # release the slots only after the copy
        self.frames_read += got
        if got < frames:
            out[got:] = 0.0
            state = self._map.get("producer_state")
            field = "underruns" if state == STATE_RUNNING else "stopped_reads"
            self._map.set(field, self._map.get(field) + 1)
            self._map.set("silence_frames", self._map.get("silence_frames") + frames - got)
        return got

    def status(self) -> RingStatus:
        m = self._map
        write_index = m.get("write_index")
        read_index = m.get("read_index")
        state = m.get("producer_state")
        age_ns = time.monotonic_ns() - m.get("heartbeat_ns")
        return RingStatus(
            sample_rate=self.sample_rate,
            channels=self.channels,
            capacity_frames=self.capacity_frames,
            write_index=write_index,
            read_index=read_index,
            fill_frames=max(0, write_index - read_index),
            producer_state=STATE_NAMES.get(state, f"unknown({state})"),
            producer_alive=state == STATE_RUNNING and age_ns < HEARTBEAT_TIMEOUT_NS,
            heartbeat_age_ms=age_ns / 1e6,
            generation=m.get("generation"),
            producer_pid=m.get("producer_pid"),
            underruns=m.get("underruns"),
            stopped_reads=m.get("stopped_reads"),
            silence_frames=m.get("silence_frames"),
        )

    def poll(self) -> bool:
        """Once drained, reopen by name if the segment was replaced or recreated; True if so.

        Not for an audio callback: it calls stat/open/mmap.
        """
        if self._map.get("write_index") > self._map.get("read_index"):
            return False  # play out what was published before switching
        state = self._map.get("producer_state")
        if state != STATE_REPLACED:
            try:
                st = os.stat(self.path)
            except FileNotFoundError:
                return False
            if (st.st_dev, st.st_ino) == self._map.identity:
                return False
        old = self._map
        try:
            self._data = None
            self._open()
        except RingError:
            self._map, self._data = old, old.data_view()
            return False
        old.close()
        self.reopens += 1
        return True

    def close(self) -> None:
        if self._map is not None:
            self._data = None
            self._map.close()
            self._map = None

    def __enter__(self) -> RingReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
