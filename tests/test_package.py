"""An install that runs: the wheel carries the example graph with its assets and schema, the
demo and the model; a daemon started from the unpacked wheel in an empty folder plays and
answers /segue/status; `segue init` gives a designer a graph that `segue check` accepts."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from pythonosc.osc_packet import OscPacket

from engine.control.osc import encode
from tests.conftest import REPO, free_port

# What a build needs from the checkout (engine/ links to statemachines, examples, models).
SOURCES = ("pyproject.toml", "README.md", "engine", "statemachines", "examples", "models")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel `pip install .` builds, from a clean copy (a stale build/ cannot leak in)."""
    tmp = tmp_path_factory.mktemp("wheel")
    for name in SOURCES:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, tmp / "src" / name, symlinks=True,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))  # fmt: skip
        else:
            (tmp / "src").mkdir(exist_ok=True)
            shutil.copyfile(source, tmp / "src" / name)
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "-w", str(tmp / "dist"), str(tmp / "src")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    (path,) = (tmp / "dist").glob("segue-*.whl")
    return path


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> dict:
    """The wheel unpacked as site-packages would hold it; an environment that imports only it."""
    site = tmp_path_factory.mktemp("site")
    with zipfile.ZipFile(wheel) as z:
        z.extractall(site)
    return os.environ | {"PYTHONPATH": str(site)}


def shipped_in_checkout() -> list[str]:
    """The files the wheel must carry, as the checkout holds them."""
    graph = [f"engine/statemachines/{p.relative_to(REPO / 'statemachines')}"
             for p in (REPO / "statemachines").rglob("*") if p.is_file()]  # fmt: skip
    model = [f"engine/models/{p.name}" for p in (REPO / "models").glob("*.onnx")]
    model += [f"engine/models/{p.stem}.json" for p in (REPO / "models").glob("*.onnx")]
    return graph + model + ["engine/examples/demo_game.py", "engine/examples/session.yaml"]


def test_the_wheel_carries_the_graph_its_assets_the_demo_and_the_model(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = shipped_in_checkout()
    assert "engine/statemachines/segue-graph.schema.json" in expected
    assert "engine/statemachines/motifs/hero.mid" in expected
    assert [n for n in expected if n not in names] == []


def segue(env, *args, cwd):
    return subprocess.run([sys.executable, "-m", "engine", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=120)  # fmt: skip


def status(sock, port: int) -> dict | None:
    sock.sendto(encode("/segue/status"), ("127.0.0.1", port))
    try:
        data, _ = sock.recvfrom(65536)
    except OSError:
        return None
    for item in OscPacket(data).messages:
        if item.message.address == "/segue/status":
            return json.loads(item.message.params[0])
    return None


def test_the_installed_daemon_plays_from_an_empty_folder(installed, tmp_path):
    import socket

    port = free_port()
    log = tmp_path / "daemon.log"
    empty = tmp_path / "empty"
    empty.mkdir()
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "engine", "run", "--output", "null", "--no-ui",
             "--port", str(port)],
            env=installed, cwd=empty, stdin=subprocess.DEVNULL, stdout=out,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.5)
    try:
        deadline, first, reply = time.monotonic() + 90, None, None
        while time.monotonic() < deadline and proc.poll() is None:
            reply = status(sock, port)
            if reply and first is not None and reply["frame"] > first:
                break
            first = reply["frame"] if reply else None
            time.sleep(0.2)
        assert proc.poll() is None, log.read_text()
        assert reply and first is not None and reply["frame"] > first, log.read_text()
    finally:
        sock.close()
        proc.terminate()
        proc.wait(20)
    site = installed["PYTHONPATH"]
    assert reply["graph"] == f"{site}/engine/statemachines/game.yaml"
    assert reply["generator"] == "model", log.read_text()
    assert reply["state"] == "idle"


def test_init_copies_a_graph_that_checks_and_never_overwrites(installed, tmp_path):
    made = segue(installed, "init", "mygame", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    assert "segue run --graph mygame/game.yaml" in made.stdout
    copied = sorted(str(p.relative_to(tmp_path / "mygame"))
                    for p in (tmp_path / "mygame").rglob("*") if p.is_file())  # fmt: skip
    assert copied == ["game.yaml", "motifs/hero.mid", "segue-graph.schema.json",
                      "stingers/fanfare.mid", "stingers/hit.mid"]  # fmt: skip
    checked = segue(installed, "check", "mygame/game.yaml", cwd=tmp_path)
    assert checked.returncode == 0, checked.stderr

    (tmp_path / "mygame" / "game.yaml").write_text("# mine\n")
    again = segue(installed, "init", "mygame", cwd=tmp_path)
    assert again.returncode == 1
    assert again.stderr.count("\n") == 1 and "already exists" in again.stderr, again.stderr
    assert (tmp_path / "mygame" / "game.yaml").read_text() == "# mine\n"


def test_a_benchmark_run_writes_where_git_ignores_it():
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import _harness
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    for result in (_harness.RESULTS / "latency.json", _harness.RESULTS / "shm_host.json"):
        ignored = subprocess.run(["git", "check-ignore", "-q", str(result)], cwd=REPO)
        assert ignored.returncode == 0, f"{result} would dirty the checkout"
    tracked = subprocess.run(["git", "ls-files", str(_harness.RESULTS)], cwd=REPO,
                             capture_output=True, text=True)  # fmt: skip
    assert tracked.stdout == "", "result files are committed; the published ones live in READMEs"
