"""The shared-memory ring: one layout in Python and C, writer/reader round trips, lifetimes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import numpy as np
import pytest

from engine.audio import ring
from engine.audio.ring import RingError, RingWriter
from engine.audio.ring_reader import RingReader

ROOT = Path(__file__).resolve().parents[1]
HEADER_DIR = ROOT / "engine" / "data"
CONSUMER_SRC = ROOT / "tests" / "c" / "ring_consumer.c"


@pytest.fixture
def segment():
    name = f"segue-test-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    yield name
    for path in (Path(ring.SHM_DIR) / name,):
        path.unlink(missing_ok=True)


def ramp(start: int, frames: int, channels: int = 2) -> np.ndarray:
    """Frames whose samples encode their ring index (exact in float32 below 2**24)."""
    index = np.arange(start, start + frames, dtype=np.float64)
    return np.stack([index + 1 + c * 0.5 for c in range(channels)], axis=1).astype(np.float32)


# ---- one layout -----------------------------------------------------------------------


def compile_consumer(tmp_path: Path, std: str) -> Path:
    if shutil.which("cc") is None:
        pytest.skip("no C compiler (cc) on PATH: the C reader cannot be built")
    out = tmp_path / f"ring_consumer_{std}"
    subprocess.run(
        ["cc", f"-std={std}", "-O2", "-Wall", "-Wextra", "-pedantic", "-Werror",
         f"-I{HEADER_DIR}", str(CONSUMER_SRC), "-o", str(out)],
        check=True,
    )  # fmt: skip
    return out


@pytest.mark.parametrize("std, atomics", [("c11", "c11"), ("c99", "gnu")])
def test_c_header_constants_equal_the_python_layout(tmp_path, std, atomics):
    layout = json.loads(
        subprocess.run(
            [compile_consumer(tmp_path, std), "--layout"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    assert layout["atomics"] == atomics
    assert layout["magic"] == ring.MAGIC
    assert layout["version"] == ring.VERSION
    assert layout["header_bytes"] == ring.HEADER_BYTES
    assert layout["offsets"] == ring.OFFSETS
    assert layout["states"] == {
        "stopped": ring.STATE_STOPPED,
        "running": ring.STATE_RUNNING,
        "replaced": ring.STATE_REPLACED,
    }
    assert layout["heartbeat_timeout_ns"] == ring.HEARTBEAT_TIMEOUT_NS


def test_c_header_compiles_as_cplusplus(tmp_path):
    cxx = shutil.which("c++") or shutil.which("g++")
    if cxx is None:
        pytest.skip("no C++ compiler: the header's C++ path (Wwise example) is not checked")
    src = tmp_path / "use.cpp"
    src.write_text(
        '#include "segue_ring.h"\n'
        'int main() { segue_ring r; float b[512]; segue_ring_open(&r, "x");\n'
        "  segue_ring_read(&r, b, 256, 2); segue_ring_poll(&r); segue_ring_close(&r); }\n"
    )
    subprocess.run(
        [cxx, "-std=c++11", "-Wall", "-Wextra", "-pedantic", "-Werror", f"-I{HEADER_DIR}",
         str(src), "-o", str(tmp_path / "use")],
        check=True,
    )  # fmt: skip


def test_indices_sit_on_their_own_cache_lines():
    line = {name: offset // ring.CACHE_LINE_BYTES for name, offset in ring.OFFSETS.items()}
    for index in ("write_index", "read_index"):
        sharing = [n for n, ln in line.items() if ln == line[index] and n != index]
        assert sharing == [], f"{index} shares its cache line with {sharing}"
    assert all(offset % 8 == 0 for offset in ring.OFFSETS.values())
    assert ring.HEADER_BYTES % 4096 == 0


# ---- Python writer and reader -----------------------------------------------------------


def test_round_trip_across_wrap_with_odd_sizes(segment):
    writer = RingWriter(segment, 48000, 2, capacity_frames=1000)  # not a power of two
    writer.start()
    reader = RingReader(segment)
    written = read = 0
    chunks = []
    for _ in range(40):
        while writer.free_frames() >= 300:
            writer.write(ramp(written, 300))
            written += 300
        frames = 256
        chunks.append(reader.read(frames))
        read += frames
    got = np.concatenate(chunks)
    np.testing.assert_array_equal(got, ramp(0, read))
    status = reader.status()
    assert status.underruns == 0 and status.silence_frames == 0
    assert status.fill_frames == written - read <= 1000
    assert status.producer_alive and status.producer_state == "running"
    reader.close()
    writer.close()


def test_short_read_fills_silence_and_counts_underrun_then_stopped(segment):
    writer = RingWriter(segment, 48000, 2, capacity_frames=1024)
    reader = RingReader(segment)
    assert reader.status().producer_state == "stopped"  # attached, nothing published yet
    writer.start()
    writer.write(ramp(0, 100))
    out = reader.read(256)
    np.testing.assert_array_equal(out[:100], ramp(0, 100))
    assert not out[100:].any()
    writer.write(ramp(100, 50))
    writer.stop()
    out = reader.read(256)  # what was published before the stop is still delivered
    np.testing.assert_array_equal(out[:50], ramp(100, 50))
    assert not out[50:].any()
    status = reader.status()
    assert (status.underruns, status.stopped_reads, status.silence_frames) == (1, 1, 156 + 206)
    assert status.producer_state == "stopped" and not status.producer_alive
    assert reader.frames_read == 150
    reader.close()
    writer.close()


def test_restarted_writer_reattaches_and_continues(segment):
    first = RingWriter(segment, 48000, 2, capacity_frames=1024)
    reader = RingReader(segment)
    first.write(ramp(0, 200))
    first.stop()
    first.close()
    second = RingWriter(segment, 48000, 2, capacity_frames=1024)
    assert second.reattached and second.write_index == 200 and second.generation == 2
    second.write(ramp(200, 200))
    np.testing.assert_array_equal(reader.read(400), ramp(0, 400))
    assert reader.poll() is False  # same segment: nothing to reopen
    reader.close()
    second.close(unlink=True)
    assert not (Path(ring.SHM_DIR) / segment).exists()


def test_writer_of_another_format_replaces_segment_and_reader_reopens(segment):
    old = RingWriter(segment, 48000, 2, capacity_frames=1024)
    reader = RingReader(segment)
    old.write(ramp(0, 32))
    old.stop()
    old.close()
    new = RingWriter(segment, 44100, 2, capacity_frames=2048)
    assert not new.reattached and new.generation == 1
    assert reader.status().producer_state == "replaced"
    new.write(ramp(0, 64))
    assert reader.poll() is False  # the old one still holds 32 unread frames
    np.testing.assert_array_equal(reader.read(32), ramp(0, 32))
    assert reader.poll() is True
    assert (reader.sample_rate, reader.capacity_frames, reader.reopens) == (44100, 2048, 1)
    np.testing.assert_array_equal(reader.read(64), ramp(0, 64))
    reader.close()
    new.close()


def test_second_live_writer_is_refused_but_a_dead_ones_segment_is_reused(segment):
    writer = RingWriter(segment, 48000, 2, capacity_frames=1024)
    writer.start()
    with pytest.raises(RingError, match=f"shm:{segment} is in use by another Segue"):
        RingWriter(segment, 48000, 2, capacity_frames=1024)
    writer._map.set("producer_pid", 2**22 + 1)  # above pid_max: a crashed producer's pid
    successor = RingWriter(segment, 48000, 2, capacity_frames=1024)
    assert successor.reattached and successor.generation == 2
    successor.close()
    writer.close()


@pytest.mark.parametrize(
    "name, ok",
    [("segue", True), ("game.music_1-a", True), ("", False), ("a/b", False),
     ("../etc", False), (".hidden", False), ("x" * 201, False), ("sp ace", False)],
)  # fmt: skip
def test_segment_names(name, ok):
    if ok:
        assert ring.check_name(name) == name
    else:
        with pytest.raises(RingError, match="bad shared-memory name"):
            ring.check_name(name)


def test_reader_errors_are_one_line(segment):
    with pytest.raises(RingError, match=r"no Segue ring named .* `segue run --output shm:"):
        RingReader(segment)
    path = Path(ring.SHM_DIR) / segment
    path.write_bytes(b"\0" * 8192)
    with pytest.raises(RingError, match="not a Segue ring"):
        RingReader(segment)
    writer = RingWriter(segment + "v", 48000, 2, capacity_frames=256)
    writer._map.set("version", 99)
    try:
        with pytest.raises(RingError, match="ring version 99"):
            RingReader(segment + "v")
    finally:
        writer.close(unlink=True)
