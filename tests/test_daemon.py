"""The whole daemon as a user runs it: `segue run` on a JACK dummy device, real UDP.

One daemon per module (start-up fills every state's pool, a few seconds).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pythonosc.osc_packet import OscPacket

from engine.control.osc import encode
from tests.conftest import GAME, free_port

POOL_DEPTH = 2  # engine.control.daemon.DaemonConfig.pool_depth: loops kept ready per state
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux


class Client:
    """A game's OSC endpoint: sends to Segue, receives replies and notifications."""

    def __init__(self, port: int) -> None:
        self.segue = ("127.0.0.1", port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]

    def send(self, address: str, *args) -> None:
        self.sock.sendto(encode(address, *args), self.segue)

    def send_raw(self, data: bytes) -> None:
        self.sock.sendto(data, self.segue)

    def receive(self, address: str, timeout: float = 2.0) -> list | None:
        """Params of the next message at `address` (others are skipped)."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                data, _ = self.sock.recvfrom(65536)
            except OSError:
                return None
            for item in OscPacket(data).messages:
                if item.message.address == address:
                    return list(item.message.params)
        return None

    def drain(self) -> None:
        """Drop whatever has arrived so far (notifications sent before this point)."""
        self.sock.setblocking(False)
        try:
            while True:
                self.sock.recvfrom(65536)
        except OSError:
            pass
        finally:
            self.sock.setblocking(True)

    def status(self, timeout: float = 2.0) -> dict | None:
        self.send("/segue/status")
        params = self.receive("/segue/status", timeout)
        return json.loads(params[0]) if params else None


def start_daemon(tmp_path, env, *extra, graph=None):
    folder = tmp_path / "graph"
    if graph is None:
        shutil.copytree(GAME.parent, folder)
        graph = folder / "game.yaml"
    port = free_port()
    log = open(tmp_path / f"daemon-{port}.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine", "run", "--graph", str(graph), "--port", str(port),
         "--device", "jack", *extra],
        env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path,
    )  # fmt: skip
    client = Client(port)
    deadline = time.monotonic() + 90
    first = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail((tmp_path / f"daemon-{port}.log").read_text())
        status = client.status(timeout=0.5)
        if status is None:
            continue
        # Ready when audio flows (JACK may hold a new client for a moment after it joins) and
        # every state has a loop (the music starts with the first state's first loop).
        pools_ready = all(n >= 1 for n in status["pools"].values())
        if first is not None and status["frame"] > first and pools_ready:
            return proc, client, graph, tmp_path / f"daemon-{port}.log"
        first = status["frame"]
        time.sleep(0.1)
    proc.kill()
    pytest.fail("the daemon did not answer /segue/status within 90 s")


def stop(proc):
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="module")
def daemon(tmp_path_factory, jack_server):
    tmp = tmp_path_factory.mktemp("daemon")
    proc, client, graph, log = start_daemon(tmp, jack_server, "--no-model")
    # These tests time transitions, not the start-up fill: wait for full pools.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status = client.status(timeout=0.5)
        if status and all(n >= 2 for n in status["pools"].values()):
            break
        time.sleep(0.1)
    client.send("/segue/subscribe", client.port)
    yield proc, client, graph, log
    stop(proc)


def test_status_has_the_documented_fields(daemon):
    _, client, _, _ = daemon
    status = client.status()
    for key in ("state", "tempo", "bar", "beat", "loop", "pools", "counters", "sink"):
        assert key in status
    assert status["state"] == "idle"
    assert status["sink"]["hostapi"] == "JACK Audio Connection Kit"
    assert set(status["pools"]) == {"idle", "explore", "combat", "victory", "defeat"}
    assert status["synth"]["synth"].startswith("FluidSynth 2.")
    assert status["synth"]["soundfont"].endswith((".sf2", ".sf3"))


def test_event_changes_state_and_the_crossfade_starts_next_block(daemon):
    """Checked in frames, not seconds (the latency budget is the latency benchmark's)."""
    _, client, _, _ = daemon
    client.send("/segue/event", "enemy_spotted")
    combat, combat_frame = client.receive("/segue/state")  # the subscriber hears the change
    assert combat == "combat"
    latency = []
    deadline = time.monotonic() + 10.0
    while not latency and time.monotonic() < deadline:  # resolved once the mixer plays it
        time.sleep(0.02)  # status requests are rate-limited per sender
        latency = (client.status() or {}).get("latency", [])
    response = latency[-1]
    assert response["event"] == "enemy_spotted"
    assert 0 <= response["frames_after_apply"] <= 256  # the very next block
    client.drain()  # beats and bars of combat; an earlier /segue/state must not count
    client.send("/segue/event", "player_died")
    state, frame = client.receive("/segue/state")
    assert state == "defeat" and frame > combat_frame


def test_garbage_datagrams_are_counted_and_streaming_goes_on(daemon):
    _, client, _, _ = daemon
    before = client.status()
    for n in range(50):
        client.send_raw(os.urandom(1 + n * 7))
    client.send_raw(encode("/segue/event", "enemy_spotted")[:-2])
    client.send("/segue/param", "intensity", "loud")
    client.send("/segue/nope")

    def rejected(status: dict) -> int:
        return sum(status["counters"][f"osc_{k}"] - before["counters"][f"osc_{k}"]
                   for k in ("malformed", "bad_args", "unknown_address"))  # fmt: skip

    deadline = time.monotonic() + 10.0  # a wait for the counters and a block, not a budget
    after = client.status()
    while (rejected(after) < 53 or after["frame"] == before["frame"]) and (
        time.monotonic() < deadline
    ):
        time.sleep(0.05)
        after = client.status()
    assert rejected(after) == 53
    assert after["frame"] > before["frame"]  # still streaming


def test_unknown_event_and_state_are_reported(daemon):
    _, client, _, _ = daemon
    before = client.status()["counters"]
    client.send("/segue/event", "no_such_event")
    client.send("/segue/state", "no_such_state")
    assert "unknown state 'no_such_state'" in client.receive("/segue/error")[0]
    after = client.status()["counters"]
    assert after["unknown_events"] == before["unknown_events"] + 1


def test_beat_and_bar_callbacks_match_the_audio_clock(daemon):
    """Beats arrive ahead of the audio, stamped with the frame and the moment they sound."""
    _, client, _, _ = daemon
    client.send("/segue/state", "combat")
    deadline = time.monotonic() + 10.0
    status = client.status()
    while time.monotonic() < deadline and not (
        status["state"] == "combat" and status["pending"] is None and status["tempo"] == 144
    ):
        time.sleep(0.1)
        status = client.status()
    anchor, tempo = status["grid_anchor_frame"], status["tempo"]
    beat_frames = 60 / tempo * 48000
    client.drain()  # beats of the state before: not on this grid
    beats = []
    # The kernel stamps each datagram as it arrives: a stall of this process cannot move it.
    client.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    client.sock.settimeout(5.0)
    while len(beats) < 4:  # 144 BPM: a beat every 0.42 s
        data, ancillary, _, _ = client.sock.recvmsg(65536, 64)
        seconds, nanoseconds = struct.unpack("qq", ancillary[0][2][:16])
        arrived = seconds + nanoseconds / 1e9
        for item in OscPacket(data).messages:
            if item.message.address == "/segue/beat":
                beats.append((item.message.params, item.time, arrived))
    client.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 0)
    latency_s = status["sink"]["output_latency_ms"] / 1000  # the ring's fill and the device's
    for (bar, beat, frame), timetag, arrived in beats:
        k = (frame - anchor) / beat_frames
        assert abs(k - round(k)) * beat_frames <= 1, (frame, anchor)  # exactly on the grid
        assert 1 <= beat <= 4 and bar >= 1
        # Stamped at most the look-ahead (2 blocks) plus the output latency ahead of its
        # arrival (a late daemon only makes the gap smaller), with room for a ring that a
        # busy host left fuller than its target.
        assert timetag - arrived <= 2 * 256 / 48000 + latency_s + 0.1
    frames = [params[2] for params, _, _ in beats]
    assert all(abs((b - a) - beat_frames) <= 1 for a, b in zip(frames, frames[1:], strict=False))


def test_ping_pong(daemon):
    """The pong carries the daemon's CLOCK_MONOTONIC: it falls between send and receipt."""
    _, client, _, _ = daemon
    client.drain()
    sent = time.monotonic()
    client.send("/segue/ping", 5)
    pong = client.receive("/segue/pong")
    received = time.monotonic()
    assert pong[0] == 5 and sent <= pong[1] <= received


def test_live_edit_invalid_keeps_playing_valid_is_heard(daemon):
    _, client, graph, _ = daemon
    client.send("/segue/state", "idle")
    deadline = time.monotonic() + 30.0  # waits, not budgets: a busy machine takes longer
    while time.monotonic() < deadline:
        status = client.status()
        if (
            status
            and status["state"] == "idle"
            and status["pending"] is None
            and status["loop"].startswith("idle")
        ):
            break
    assert status and status["state"] == "idle" and status["loop"].startswith("idle"), status
    time.sleep(0.5)  # let the crossfade finish
    original = graph.read_text()
    broken = original.replace("tempo: 84", "tempo: [84", 1)
    graph.write_text(broken)
    error = client.receive("/segue/error", timeout=30.0)
    assert error and error[0].startswith(f"{graph}:") and "YAML syntax" in error[0]
    line_col = error[0][len(str(graph)) + 1 :].split(":")[:2]
    assert all(part.isdigit() for part in line_col)
    status = client.status()
    assert status["counters"]["reload_errors"] >= 1 and status["state"] == "idle"
    assert status["last_error"] == error[0]

    before = status["loop"]
    edited = original.replace("tempo: 84", "tempo: 96", 1)
    graph.write_text(edited)
    deadline = time.monotonic() + 60.0  # a wait, not a budget: the benchmarks time reloads
    while time.monotonic() < deadline:
        status = client.status(timeout=0.3)
        if status and status["tempo"] == 96.0 and status["loop"] != before:
            break
    # Heard: a fresh idle loop at the new tempo plays (the old loop was generated at 84).
    assert status["tempo"] == 96.0 and status["loop"] != before, status
    assert status["state"] == "idle" and status["loop"].startswith("idle")
    assert status["last_error"] == ""
    graph.write_text(original)


def test_a_graph_written_in_place_is_not_read_while_empty(daemon):
    """An editor that writes in place truncates the file first; a writer the machine pauses
    there shows an empty graph for several watch periods. That is not the designer's edit:
    no error reaches the game, and the graph written after it is adopted."""
    _, client, graph, _ = daemon
    before = client.status()["counters"]
    original = graph.read_text()
    with graph.open("w") as f:  # truncated: empty for four watch periods
        time.sleep(0.6)
        f.write(original.replace("tempo: 84", "tempo: 100", 1))
    deadline = time.monotonic() + 30.0  # a wait, not a budget
    status = client.status()
    while time.monotonic() < deadline and status["counters"]["reloads"] == before["reloads"]:
        time.sleep(0.1)
        status = client.status()
    assert status["counters"]["reloads"] == before["reloads"] + 1, status["counters"]
    assert status["counters"]["reload_errors"] == before["reload_errors"]
    graph.write_text(original)


def test_the_shipped_model_writes_every_loop_in_the_worker_process(tmp_path, jack_server):
    """The daemon as shipped: the int8 ONNX model runs in the worker process and writes every
    loop of every state's pool; a loop from the rule-based fallback fails the test."""
    proc, client, _, log = start_daemon(tmp_path, jack_server)
    try:
        deadline = time.monotonic() + 120.0  # a wait, not a budget: start-up fills the pools
        status = client.status()
        while time.monotonic() < deadline and not (
            status and all(n >= POOL_DEPTH for n in status["pools"].values())
        ):
            time.sleep(0.2)
            status = client.status()
        workers = (Path(f"/proc/{proc.pid}/task") / str(proc.pid) / "children").read_text()
    finally:
        stop(proc)
    text = log.read_text()
    counters = status["counters"]
    assert status["generator_default"] == "model", text
    assert status["generator"] == "model"  # the loop playing now
    assert all(n >= POOL_DEPTH for n in status["pools"].values()), status["pools"]
    assert counters["pool_made"] >= POOL_DEPTH * len(status["pools"])
    assert counters["pool_fallbacks"] == 0 and counters["pool_failed"] == 0, counters
    assert "rule-based generator" not in text and "Traceback" not in text, text
    assert workers.split(), "the loops must come from a worker process"


def test_missing_model_falls_back_in_one_line(tmp_path, jack_server):
    proc, client, _, log = start_daemon(tmp_path, jack_server, "--model", "nope.onnx")
    try:
        assert client.status()["generator"] == "rules"
    finally:
        stop(proc)
    lines = [line for line in log.read_text().splitlines() if "nope.onnx" in line]
    assert len(lines) == 1 and "rule-based generator" in lines[0]
    assert "Traceback" not in log.read_text()


def test_no_audio_device_writes_a_wav_instead(tmp_path, jack_server):
    proc, client, _, log = start_daemon(
        tmp_path, jack_server, "--no-model", "--device", "no-such-card"
    )  # the last --device wins
    try:
        status = client.status()
        deadline = time.monotonic() + 20.0
        while time.monotonic() < deadline and client.status()["frame"] < 48000:
            time.sleep(0.1)  # one second of audio, however busy the host
    finally:
        stop(proc)
    text = log.read_text()
    assert status and status["sink"]["sink"] == "wav", (status, text)
    assert "no output device matching 'no-such-card'" in text, text
    assert "segue-output.wav" in text, text
    assert "Traceback" not in text, text
    size = (tmp_path / "segue-output.wav").stat().st_size
    assert size > 48000, (size, text)


def test_missing_soundfont_is_one_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "engine", "run", "--soundfont",
                             "nope.sf2"], capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode != 0
    assert result.stderr.strip().count("\n") == 0 and "nope.sf2" in result.stderr


def test_the_collector_runs_in_small_steps_on_the_control_thread():
    """No automatic collection (a full one held the GIL for 45-85 ms): the control thread
    collects the youngest objects often and freezes what survives."""
    import gc

    from engine.control.daemon import FREEZE_SECONDS, YOUNG_SECONDS, Collector

    collector = Collector()
    try:
        collector.start()
        assert not gc.isenabled()
        frozen = gc.get_freeze_count()
        assert frozen > 0
        survivors = [[i] for i in range(1000)]  # tracked objects that outlive the steps
        now = time.monotonic()
        collector.tick(now + YOUNG_SECONDS + 0.01)  # the youngest generation only
        assert gc.get_freeze_count() == frozen
        collector.tick(now + FREEZE_SECONDS + 0.01)
        assert gc.get_freeze_count() >= frozen + len(survivors)
    finally:
        gc.unfreeze()
        gc.enable()
