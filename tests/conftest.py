"""Shared fixtures: a real SoundFont workshop, a JACK dummy server, free UDP ports."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from engine.audio.mixer import Mixer, MixPlan

REPO = Path(__file__).resolve().parent.parent
GAME = REPO / "statemachines" / "game.yaml"


@pytest.fixture(scope="session")
def workshop():
    """Rule-based generator + the default SoundFont (loading an sf3 takes seconds)."""
    from engine.making.soundfont import find_soundfont
    from engine.making.workshop import Workshop

    return Workshop(find_soundfont(None), use_model=False)


@pytest.fixture(scope="session")
def model_workshop():
    """The shipped model + the default SoundFont."""
    from engine.making.soundfont import find_soundfont
    from engine.making.workshop import Workshop

    shop = Workshop(find_soundfont(None), use_model=True)
    if shop.model is None:
        pytest.fail(f"the shipped model did not load: {shop.model_problem}")
    return shop


@pytest.fixture(autouse=True)
def ordinary_scheduling():
    """Each test starts and ends with this process's main thread as an ordinary task. A sink run
    in the test's own thread raises it to SCHED_FIFO; everything started from it afterwards
    (a daemon, its loop worker, a busy helper process) would inherit that and could starve
    the machine."""
    _ordinary()
    yield
    _ordinary()


def _ordinary() -> None:
    try:
        if os.sched_getscheduler(0) != os.SCHED_OTHER:
            os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
    except (AttributeError, OSError):
        pass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def jack_server(tmp_path_factory):
    """A JACK dummy server (48 kHz, 256 frames) under a private name; yields its env."""
    if shutil.which("jackd") is None:
        pytest.fail("jackd is not installed: run the README's test command (it installs jackd2)")
    name = f"segue-test-{os.getpid()}"
    env = os.environ | {"JACK_DEFAULT_SERVER": name}
    log = tmp_path_factory.mktemp("jack") / "jackd.log"
    # Real-time (-R) where allowed: a sound card's clock is not starved by a busy CPU, but a
    # normal-priority dummy server's is, and its lateness would read as our underruns.
    realtime = ["-R", "-P", "70"] if os.geteuid() == 0 else ["-r"]
    # jackd's output goes to a file: an unread pipe would fill up and stall the server.
    proc = subprocess.Popen(
        ["jackd", "-n", name, *realtime, "-d", "dummy", "-r", "48000", "-p", "256"],
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        probe = (
            subprocess.run(["jack_lsp"], env=env, capture_output=True)
            if shutil.which("jack_lsp")
            else None
        )
        if probe is not None and probe.returncode == 0:
            break
        if proc.poll() is not None:
            pytest.fail(f"jackd exited: {log.read_text(errors='replace')}")
        time.sleep(0.2)
    yield env
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()


class RecordingMixer(Mixer):
    """The real mixer, remembering every plan it was handed (to check plan changes)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.plans: list[MixPlan] = []

    def publish(self, plan: MixPlan) -> None:
        self.plans.append(plan)
        super().publish(plan)
