"""The device sink on a real JACK dummy server: underruns counted where the device reads,
a lost server noticed, ridden out and recovered, and a daemon that stops with a dead one."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time

import pytest

from tests.test_daemon import start_daemon
from tests.test_supervision import status, wait_for


class Jack:
    """A private JACK dummy server that a test may kill and start again."""

    def __init__(self, folder, name: str) -> None:
        if shutil.which("jackd") is None:
            pytest.fail("jackd is not installed: the README's test command installs jackd2")
        # A fixed name: JACK frees a killed server's registry slot (8 in all) only when a
        # server of the same name starts again.
        self.name = name
        self.env = os.environ | {"JACK_DEFAULT_SERVER": self.name}
        self.log = folder / f"{self.name}.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        realtime = ["-R", "-P", "70"] if os.geteuid() == 0 else ["-r"]
        self.proc = subprocess.Popen(
            ["jackd", "-n", self.name, *realtime, "-d", "dummy", "-r", "48000", "-p", "256"],
            env=self.env, stdout=self.log.open("a"), stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            probe = subprocess.run(["jack_lsp"], env=self.env, capture_output=True)
            if probe.returncode == 0:
                return
            time.sleep(0.1)
        pytest.fail(f"jackd did not start: {self.log.read_text(errors='replace')}")

    def kill(self) -> None:
        self.proc.kill()  # an unplugged card: no goodbye to the clients
        self.proc.wait(5)


@pytest.fixture()
def jack(tmp_path, request):
    server = Jack(tmp_path, f"segue-{request.node.name[5:25]}")
    server.start()
    yield server
    if server.proc.poll() is None:
        server.kill()


def test_a_starved_writer_is_counted_as_underruns(tmp_path, jack):
    proc, client, _, log = start_daemon(tmp_path, jack.env, "--no-model")
    try:
        # Start-up may cost a few (JACK joining a new client, the pools filling).
        before = wait_for(client, lambda s: s["sink"]["state"] == "playing")["sink"]
        # Stop the daemon (so its writer) for 120 ms: the device process keeps reading.
        stopped_at = time.monotonic()
        os.kill(proc.pid, signal.SIGSTOP)
        time.sleep(0.12)
        os.kill(proc.pid, signal.SIGCONT)
        # About 22 blocks of 256 frames went unfed; the ring held two of them. The writer
        # records them at its first poll after waking: ask until it has.
        after = wait_for(
            client, lambda s: s["sink"]["underruns"] - before["underruns"] >= 10, timeout=5.0
        )["sink"]
        assert after["state"] == "playing" and after["losses"] == 0, after
        # And when: the writer saw the count rise as soon as it ran again (CLOCK_MONOTONIC).
        new = [t for t in after["underrun_times"] if t >= stopped_at]
        assert new and max(new) - stopped_at < 1.0, (stopped_at, after["underrun_times"])
    finally:
        proc.terminate()
        proc.wait(10)


def test_a_lost_device_keeps_the_beat_and_comes_back(tmp_path, jack):
    proc, client, _, log = start_daemon(tmp_path, jack.env, "--no-model")
    try:
        client.send("/segue/subscribe", client.port)
        wait_for(client, lambda s: s["sink"]["state"] == "playing")
        jack.kill()
        error = client.receive("/segue/error", timeout=5)  # told before anything else is read
        assert error and "audio device lost" in error[0], error
        lost = status(client)
        assert lost["sink"]["state"] in ("lost", "reopening") and lost["sink"]["losses"] == 1
        # The music keeps time without a device: bars go on reaching the game.
        frame = status(client)["frame"]
        assert client.receive("/segue/beat", timeout=3) is not None
        assert status(client)["frame"] > frame
        jack.start()
        back = wait_for(client, lambda s: s["sink"]["state"] == "playing", 30)
        assert back["sink"]["reopens"] == 1 and back["sink"]["hostapi"].startswith("JACK")
        read_index = back["sink"]["read_index"]
        assert wait_for(client, lambda s: s["sink"]["read_index"] > read_index + 48000, 10)
        lines = log.read_text().splitlines()
        assert sum("audio device lost" in line for line in lines) == 1, lines
        assert sum("audio device back" in line for line in lines) == 1, lines
        assert not any("Traceback" in line for line in lines), lines
    finally:
        proc.terminate()
        proc.wait(10)


def test_the_daemon_stops_on_sigterm_with_a_dead_device(tmp_path, jack):
    proc, client, _, log = start_daemon(tmp_path, jack.env, "--no-model")
    wait_for(client, lambda s: s["sink"]["state"] == "playing")
    jack.kill()
    wait_for(client, lambda s: s["sink"]["state"] != "playing", 10)
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(10)  # the budget (2 s) is measured by benchmarks/chaos.py; here: it ends
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("the daemon did not stop on SIGTERM with its device gone")
    assert proc.returncode == 0
    assert "Traceback" not in log.read_text()
