"""The shared-memory audio ring: the one definition of its layout, a writer and a reader.

Segue hands its mix to a host mixer (FMOD, Wwise, any program that can map shared memory)
through a single-producer / single-consumer ring of interleaved float32 frames in POSIX
shared memory, `/dev/shm/NAME` (what `shm_open("/NAME")` opens on Linux). Segue is the
producer; the host is the consumer and its audio clock drives everything: the producer only
renders ahead of the consumer's read index.

Layout (version 1). All fields are native-endian (little-endian on x86-64 and aarch64)
unsigned 64-bit integers at the byte offsets below; the C mirror is engine/data/segue_ring.h,
and tests/test_ring.py checks that its constants equal these.

    line 0, written once before the segment is published (by rename), never changed:
      0   magic             b"SEGUERNG" (0x474E5245_55474553 read as u64)
      8   version           1
      16  sample_rate       frames per second, e.g. 48000
      24  channels          interleaved channels per frame, 2
      32  capacity_frames   frames the data area holds
      40  data_offset       byte offset of frame 0 = HEADER_BYTES (4096, page aligned)
    line 1 (64), producer-owned:
      64  write_index       frames ever published; monotonic, never wraps in practice
    line 2 (128), consumer-owned:
      128 read_index        frames ever consumed; read_index <= write_index
    line 3 (192), producer status:
      192 heartbeat_ns      CLOCK_MONOTONIC ns, refreshed at every producer poll (~1 ms)
      200 producer_state    0 stopped, 1 running, 2 replaced (segment abandoned: reopen by name)
      208 generation        producers that attached so far (1 = first run; restarts = n - 1)
      216 producer_pid      process id of the last producer
    line 4 (256), consumer status (the consumer is the only writer):
      256 underruns         reads short of data while the producer was running
      264 stopped_reads     reads short of data while the producer was stopped or replaced
      272 silence_frames    frames the consumer filled with silence, in total
    4096: data            capacity_frames * channels float32, frame f at (f % capacity_frames)

Each index lives on its own 64-byte cache line so producer and consumer never write the
same line (no false sharing).

Memory ordering (the whole protocol):
    producer: write the frames into [write_index, write_index + n), THEN store write_index + n.
              Never write past read_index + capacity_frames.
    consumer: load write_index, THEN copy frames [read_index, write_index), THEN store the new
              read_index. The producer may reuse those slots only after that store.
In C this is an acquire load / release store pair (segue_ring.h). Python has no atomics; this
module relies on x86-64 facts: an aligned 8-byte store or load through a numpy uint64 view is
one `mov` (never torn), stores are not reordered with older stores, and loads are not reordered
with older loads (total store order). Each numpy call is an opaque C call, so the compiler
cannot move the data copy across the index store. On weakly ordered CPUs (aarch64) that is
not enough: `RingWriter` warns once there.

Lifetime: the producer creates the segment under a temporary name, fills the header and
renames it to NAME, so a consumer never sees a half-written header. A restarted producer
re-attaches to a compatible segment (same format) and continues from its write index; an
incompatible one is marked `replaced` and a new segment is renamed over the name. The
segment is not unlinked when the daemon stops, so a consumer survives restarts without
reopening.
"""

from __future__ import annotations

import mmap
import os
import platform
import re
import sys
import time
import warnings
from dataclasses import dataclass

import numpy as np

MAGIC = int.from_bytes(b"SEGUERNG", "little")
VERSION = 1
CACHE_LINE_BYTES = 64
HEADER_BYTES = 4096
SAMPLE_BYTES = 4  # float32

# Byte offsets of the header fields (all u64). The C header mirrors these names in upper case.
OFFSETS: dict[str, int] = {
    "magic": 0,
    "version": 8,
    "sample_rate": 16,
    "channels": 24,
    "capacity_frames": 32,
    "data_offset": 40,
    "write_index": 64,
    "read_index": 128,
    "heartbeat_ns": 192,
    "producer_state": 200,
    "generation": 208,
    "producer_pid": 216,
    "underruns": 256,
    "stopped_reads": 264,
    "silence_frames": 272,
}

STATE_STOPPED = 0
STATE_RUNNING = 1
STATE_REPLACED = 2
STATE_NAMES = {STATE_STOPPED: "stopped", STATE_RUNNING: "running", STATE_REPLACED: "replaced"}

# A producer whose heartbeat is older than this is considered gone.
HEARTBEAT_TIMEOUT_NS = 250_000_000

SHM_DIR = "/dev/shm"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")

_W = OFFSETS["write_index"] // 8
_R = OFFSETS["read_index"] // 8


class RingError(Exception):
    """The ring could not be opened or does not match; the message is one line."""


def check_name(name: str) -> str:
    """Return `name` if it is a valid segment name (letters, digits, . _ -), else raise."""
    if not _NAME_RE.match(name):
        raise RingError(
            f"bad shared-memory name {name!r}: use 1-200 letters, digits, '.', '_' or '-'"
        )
    return name


def segment_path(name: str) -> str:
    """Where the segment NAME lives (what shm_open("/NAME") opens on Linux)."""
    return os.path.join(SHM_DIR, check_name(name))


def segment_bytes(channels: int, capacity_frames: int) -> int:
    return HEADER_BYTES + capacity_frames * channels * SAMPLE_BYTES


@dataclass(frozen=True)
class RingStatus:
    """A snapshot of the ring as the consumer sees it."""

    sample_rate: int
    channels: int
    capacity_frames: int
    write_index: int
    read_index: int
    fill_frames: int
    producer_state: str
    producer_alive: bool
    heartbeat_age_ms: float
    generation: int
    producer_pid: int
    underruns: int
    stopped_reads: int
    silence_frames: int


class _Mapping:
    """An mmap of one segment with a u64 header view and a (capacity, channels) data view."""

    def __init__(self, fd: int, size_bytes: int) -> None:
        self.mm = mmap.mmap(fd, size_bytes, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        self.header = np.ndarray((HEADER_BYTES // 8,), dtype=np.uint64, buffer=self.mm)
        st = os.fstat(fd)
        self.identity = (st.st_dev, st.st_ino)

    def get(self, field: str) -> int:
        return int(self.header[OFFSETS[field] // 8])

    def set(self, field: str, value: int) -> None:
        self.header[OFFSETS[field] // 8] = value

    def data_view(self) -> np.ndarray:
        channels = self.get("channels")
        capacity = self.get("capacity_frames")
        offset = self.get("data_offset")
        return np.ndarray((capacity, channels), dtype=np.float32, buffer=self.mm, offset=offset)

    def close(self) -> None:
        # Views must go before the mmap can close (it refuses while buffers are exported).
        self.header = None
        self.mm.close()


def _open_existing(path: str) -> tuple[int, int] | None:
    """(fd, size) of an existing segment, or None if there is none."""
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return None
    except PermissionError as exc:
        raise RingError(f"cannot open {path}: permission denied") from exc
    return fd, os.fstat(fd).st_size


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_warned_ordering = False


def _warn_weak_ordering() -> None:
    global _warned_ordering
    if not _warned_ordering and platform.machine().lower() not in ("x86_64", "amd64"):
        _warned_ordering = True
        warnings.warn(
            f"shared-memory ring: the Python side assumes x86-64 store ordering; "
            f"{platform.machine()} may reorder them",
            RuntimeWarning,
            stacklevel=3,
        )


class RingWriter:
    """The producer end. One per segment; not thread-safe (the sink's thread owns it)."""

    def __init__(self, name: str, sample_rate: int, channels: int, capacity_frames: int) -> None:
        if sys.platform != "linux":
            raise RingError("the shared-memory ring needs Linux (/dev/shm)")
        if capacity_frames <= 0 or channels <= 0 or sample_rate <= 0:
            raise RingError("ring sample rate, channels and capacity must be positive")
        _warn_weak_ordering()
        self.name = check_name(name)
        self.path = segment_path(name)
        self.sample_rate = sample_rate
        self.channels = channels
        self.capacity_frames = capacity_frames
        self.reattached = False
        self._map = self._attach_or_create()
        self._data = self._map.data_view()
        self._write_index = self._map.get("write_index")
        read_index = self._map.get("read_index")
        if read_index > self._write_index:
            # A consumer ahead of the producer can only come from a damaged header: catch up.
            self._write_index = read_index
            self._map.set("write_index", read_index)
        # Stopped until start(): a consumer reading before the first frames counts a stop,
        # not an underrun. This also clears a crashed producer's stale "running".
        self._map.set("producer_state", STATE_STOPPED)
        self._map.set("producer_pid", os.getpid())
        self._map.set("generation", self._map.get("generation") + 1)
        self.beat()

    def _attach_or_create(self) -> _Mapping:
        existing = _open_existing(self.path)
        if existing is not None:
            fd, size = existing
            try:
                if size >= HEADER_BYTES:
                    mapping = _Mapping(fd, size)
                    if self._compatible(mapping, size):
                        self._refuse_if_owned(mapping)
                        self.reattached = True
                        return mapping
                    mapping.set("producer_state", STATE_REPLACED)
                    mapping.close()
            finally:
                os.close(fd)
        return self._create()

    def _compatible(self, mapping: _Mapping, size: int) -> bool:
        return (
            mapping.get("magic") == MAGIC
            and mapping.get("version") == VERSION
            and mapping.get("sample_rate") == self.sample_rate
            and mapping.get("channels") == self.channels
            and mapping.get("capacity_frames") == self.capacity_frames
            and mapping.get("data_offset") == HEADER_BYTES
            and size >= segment_bytes(self.channels, self.capacity_frames)
        )

    def _refuse_if_owned(self, mapping: _Mapping) -> None:
        pid = mapping.get("producer_pid")
        age_ns = time.monotonic_ns() - mapping.get("heartbeat_ns")
        if (
            mapping.get("producer_state") == STATE_RUNNING
            and age_ns < HEARTBEAT_TIMEOUT_NS
            and _pid_alive(pid)
        ):
            mapping.close()
            raise RingError(f"shm:{self.name} is in use by another Segue (pid {pid})")

    def _create(self) -> _Mapping:
        size = segment_bytes(self.channels, self.capacity_frames)
        tmp_path = os.path.join(SHM_DIR, f".{self.name}.{os.getpid()}.tmp")
        try:
            fd = os.open(tmp_path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        except OSError as exc:
            raise RingError(f"cannot create {tmp_path}: {exc.strerror}") from exc
        try:
            os.ftruncate(fd, size)  # tmpfs zero-fills: indices, counters and samples start at 0
            mapping = _Mapping(fd, size)
            for field, value in (
                ("version", VERSION),
                ("sample_rate", self.sample_rate),
                ("channels", self.channels),
                ("capacity_frames", self.capacity_frames),
                ("data_offset", HEADER_BYTES),
                ("magic", MAGIC),
            ):
                mapping.set(field, value)
            # Publish the complete header atomically under the real name.
            os.rename(tmp_path, self.path)
            return mapping
        except OSError as exc:
            os.unlink(tmp_path)
            raise RingError(f"cannot create {self.path}: {exc.strerror}") from exc
        finally:
            os.close(fd)

    @property
    def write_index(self) -> int:
        return self._write_index

    @property
    def generation(self) -> int:
        return self._map.get("generation")

    def read_index(self) -> int:
        return self._map.get("read_index")

    def counter(self, field: str) -> int:
        """A consumer counter from the header: underruns, stopped_reads, silence_frames."""
        return self._map.get(field)

    def free_frames(self) -> int:
        """Frames that can be written without passing read_index + capacity."""
        fill = max(0, self._write_index - self.read_index())
        return self.capacity_frames - min(fill, self.capacity_frames)

    def write(self, frames: np.ndarray) -> None:
        """Copy (n, channels) float32 frames into the ring, then publish the new write index.

        The caller guarantees n <= free_frames() (the producer's pacing loop does).
        """
        frames_count = frames.shape[0]
        start = self._write_index % self.capacity_frames
        first = min(frames_count, self.capacity_frames - start)
        np.copyto(self._data[start : start + first], frames[:first])
        if first < frames_count:
            np.copyto(self._data[: frames_count - first], frames[first:])
        # Data first, then the index: the consumer never sees frames that are not there yet.
        self._write_index += frames_count
        self._map.header[_W] = self._write_index

    def beat(self) -> None:
        self._map.set("heartbeat_ns", time.monotonic_ns())

    def start(self) -> None:
        """Mark the producer running (after the first frames are published)."""
        self.beat()
        self._map.set("producer_state", STATE_RUNNING)

    def stop(self) -> None:
        """Mark the producer stopped; frames already published stay readable."""
        self.beat()
        self._map.set("producer_state", STATE_STOPPED)

    def close(self, unlink: bool = False) -> None:
        if self._map is None:
            return
        self._data = None
        identity = self._map.identity
        self._map.close()
        self._map = None
        if unlink:
            try:
                st = os.stat(self.path)
                if (st.st_dev, st.st_ino) == identity:
                    os.unlink(self.path)
            except FileNotFoundError:
                pass
