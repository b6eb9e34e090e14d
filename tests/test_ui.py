"""The live view in a real browser: Debian's Chromium driven by Playwright, a real daemon,
real UDP. The page must follow the music and send the game's commands the OSC road."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
from pythonosc.osc_packet import OscPacket

from engine.control.osc import encode
from engine.ui.snapshot import describe_error, describe_graph
from tests.conftest import GAME, free_port

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]  # fmt: skip


def status(port: int, timeout: float = 1.0) -> dict | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(timeout)
        sock.sendto(encode("/segue/status"), ("127.0.0.1", port))
        try:
            data, _ = sock.recvfrom(65536)
        except OSError:
            return None
    for item in OscPacket(data).messages:
        if item.message.address == "/segue/status":
            return json.loads(item.message.params[0])
    return None


def post(url: str, body) -> tuple[int, dict]:
    request = urllib.request.Request(url + "api/command", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=2) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    """`segue run` with the page on a free port (null output: this is about the page)."""
    tmp = tmp_path_factory.mktemp("ui")
    shutil.copytree(GAME.parent, tmp / "graph")
    graph = tmp / "graph" / "game.yaml"
    port = free_port()
    log_path = tmp / "daemon.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "engine", "run", "--graph", str(graph), "--port", str(port),
             "--output", "null", "--no-model", "--ui-port", "0"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=tmp,
        )  # fmt: skip
    deadline = time.monotonic() + 90
    url = None
    while time.monotonic() < deadline and url is None:
        if proc.poll() is not None:
            pytest.fail(log_path.read_text())
        answer = status(port, 0.5)
        url = answer and answer.get("ui")
    if url is None:
        proc.kill()
        pytest.fail("the daemon did not answer /segue/status within 90 s")
    while f"live view at {url}" not in log_path.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)  # the address is printed for the designer, too
    assert f"live view at {url}" in log_path.read_text()
    yield url, port, graph
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="module")
def page(daemon, tmp_path_factory):
    from playwright.sync_api import sync_playwright

    if not shutil.which(CHROMIUM):
        pytest.fail("Debian's chromium is not installed: run the README's test command")
    url = daemon[0]
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=CHROMIUM,
            args=CHROMIUM_ARGS, headless=True, viewport={"width": 1400, "height": 1000},
        )  # fmt: skip
        page = context.new_page()
        page.requests = []  # every address the page asks for
        page.errors = []
        page.on("request", lambda r: page.requests.append(r.url))
        page.on("pageerror", lambda e: page.errors.append(str(e)))
        page.goto(url)
        page.wait_for_selector('g.node.current[data-state="idle"]', timeout=15000)
        yield page
        context.close()


def lit(page) -> str:
    return page.get_attribute("g.node.current", "data-state")


def test_the_page_draws_the_graph_and_lights_the_playing_state(page, daemon):
    nodes = page.eval_on_selector_all("g.node", "els => els.map(e => e.dataset.state)")
    assert set(nodes) == {"idle", "explore", "combat", "victory", "defeat", "any"}
    labels = page.text_content("svg#graph")
    assert "enemy_spotted" in labels and "when intensity > 0.85" in labels
    assert "next bar · fade 1 beats" in labels  # exit point and fades on the edge
    assert lit(page) == status(daemon[1])["state"] == "idle"
    buttons = page.eval_on_selector_all(
        "button[data-event]", "els => els.map(e => e.dataset.event)"
    )
    assert "enemy_spotted" in buttons and "player_died" in buttons
    assert page.is_visible('input[data-param="intensity"]')


def test_clicking_an_event_changes_the_daemon_and_the_lit_node(page, daemon):
    _, port, _ = daemon
    page.click('button[data-event="enemy_spotted"]')
    # idle → combat is an immediate exit: the daemon's state and the page's lit node agree.
    page.wait_for_selector('g.node.current[data-state="combat"]', timeout=5000)
    assert status(port)["state"] == "combat"
    assert page.text_content("#state-label") == "combat"
    # Clicked on the first beat of a bar, the next-bar exit is three beats away (1.25 s at
    # 144 bpm): long enough for a busy machine to see the countdown before it ends.
    page.wait_for_function("() => window.segueView.live.beat === 1", timeout=5000, polling=10)
    page.click('button[data-event="enemy_defeated"]')  # next bar: the page counts down
    page.wait_for_function(
        """() => { const n = document.querySelector('g.node.pending[data-state="victory"]');
                   return n && /in \\d+ ms · next_bar/.test(n.textContent); }""",
        timeout=5000, polling=10,
    )  # fmt: skip
    page.wait_for_function("() => !document.querySelector('g.node.pending')", timeout=10000)


def test_forcing_a_state_and_muting_a_part_go_through_the_daemon(page, daemon):
    _, port, _ = daemon
    page.click('button[data-force="defeat"]')
    page.wait_for_selector('g.node.current[data-state="defeat"]', timeout=5000)
    assert status(port)["state"] == "defeat"
    page.click('button[data-mute="bass"]')
    page.wait_for_selector('button.muted[data-mute="bass"]', timeout=5000)
    assert status(port)["muted"] == ["bass"]
    page.click('button[data-mute="bass"]')
    page.wait_for_selector('button[data-mute="bass"]:not(.muted)', timeout=5000)
    assert status(port)["muted"] == []


def test_the_timeline_and_the_piano_roll_fill_in(page):
    kinds = page.evaluate(
        "() => [...new Set([...window.segueView.rows.values()].map(r => r.kind))]"
    )
    assert {"beat", "event", "transition", "loop"} <= set(kinds)
    loop = page.evaluate("() => window.segueView.loop")
    assert loop["notes"] and loop["parts"]
    assert page.evaluate("() => window.segueView.responses.length") >= 2


def test_a_broken_edit_shows_file_line_column_and_the_old_graph_keeps_playing(page, daemon):
    _, port, graph = daemon
    good = graph.read_text()
    broken = good.replace("    tempo: 144\n", "    tempo: fast\n")
    assert broken != good
    line = broken.splitlines().index("    tempo: fast") + 1
    graph.write_text(broken)
    page.wait_for_selector("#error:not([hidden])", timeout=10000)
    where = page.text_content("#error .where")
    assert f"game.yaml:{line}:12:" in where
    assert "tempo: fast" in page.text_content("#error .source")
    answer = status(port)
    assert answer["last_error"].endswith(where.split("game.yaml", 1)[1])
    assert page.is_visible('g.node[data-state="combat"]')  # the old graph is still drawn
    # A valid edit redraws the graph and clears the error.
    graph.write_text(good.replace("  defeat:\n", "  lull:\n    mood: calm\n    key: F\n"
                                  "    instruments: {pad: strings}\n  defeat:\n"))  # fmt: skip
    page.wait_for_selector('g.node[data-state="lull"]', timeout=10000)
    page.wait_for_selector("#error[hidden]", state="attached", timeout=5000)
    graph.write_text(good)


def test_the_page_asks_only_its_own_server_and_raises_nothing(page, daemon):
    url = daemon[0]
    assert page.requests and all(u.startswith(url) or u.startswith("data:") for u in page.requests)
    assert page.errors == []


def test_commands_are_checked_like_osc(daemon):
    url = daemon[0]
    assert post(url, {"address": "/segue/event", "args": ["enemy_lost"]})[0] == 202
    code, body = post(url, {"address": "/segue/param", "args": ["intensity", "high"]})
    assert (code, body) == (400, {"error": "/segue/param argument 2 must be a number, got str"})
    code, body = post(url, {"address": "/segue/subscribe", "args": [9001]})
    assert code == 400 and "the page may send" in body["error"]
    assert post(url, "not a command")[0] == 400


def test_the_server_answers_loopback_names_only(daemon):
    url = daemon[0]
    request = urllib.request.Request(url, headers={"Host": "rebound.example:80"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=2)
    assert refused.value.code == 403
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(url + "static/../game.yaml", timeout=2)
    assert missing.value.code == 404


def test_describe_error_reads_the_line_from_the_graph_folder_only(tmp_path):
    graph = tmp_path / "g.yaml"
    graph.write_text("a: 1\nb: oops\n")
    detail = describe_error(f"{graph}:2:4: tempo must be a number", graph)
    assert detail["line"] == 2 and detail["column"] == 4 and detail["source"] == "b: oops"
    outside = describe_error("/etc/passwd:1:1: nope", graph)
    assert outside["line"] == 1 and "source" not in outside
    assert describe_error("", graph) is None


def test_describe_graph_names_every_control():
    from engine.score.load import load_graph

    described = describe_graph(load_graph(GAME))
    assert described["events"] == sorted(load_graph(GAME).events)
    assert {s["name"] for s in described["stingers"]} == {"hit", "fanfare"}
    assert described["parts"] == ["drums", "bass", "pad", "lead"]
    json.dumps(described)  # travels as JSON


def test_timeline_rows_are_sent_once_in_order_even_across_trims_and_late_frames():
    from engine.control.timeline import Timeline
    from engine.ui.snapshot import Snapshots

    timeline = Timeline(48000, keep=5)
    snapshots = Snapshots(daemon=None)
    rows = lambda: [(r["kind"], r["frame"], r.get("cancelled", False))  # noqa: E731
                    for r in snapshots._new_entries(timeline)]  # fmt: skip
    timeline.add("beat", {}, frame=1)
    late = timeline.add("transition", {}, serial=7)  # its frame is known once the plan plays
    assert rows() == [("beat", 1, False)]
    assert rows() == []
    late.frame = 20
    sent = rows()
    for frame in range(2, 30):  # pushes between entries, while the timeline trims its head
        timeline.add("beat", {}, frame=frame)
        sent += rows()
    assert sent[0] == ("transition", 20, False)
    assert [f for k, f, _ in sent[1:]] == list(range(2, 30))
    late.data["cancelled"] = True  # a later rule replaced it: the page redraws its row
    assert rows() == [("transition", 20, True)]
    assert rows() == []


def test_a_bad_request_gets_one_line_and_no_traceback(daemon):
    url = daemon[0]
    host, port = url.removeprefix("http://").strip("/").split(":")
    with socket.create_connection((host, int(port)), timeout=2) as sock:
        sock.sendall(
            b"POST /api/command HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: lots\r\n\r\n"
        )
        answer = ""
        while not answer.endswith("}"):  # headers and body may come apart
            chunk = sock.recv(4096).decode()
            if not chunk:
                break
            answer += chunk
    assert answer.startswith("HTTP/1.1 400") and "a command is a small JSON object" in answer
    assert "Traceback" not in (daemon[2].parent.parent / "daemon.log").read_text()


def test_the_backlog_for_a_late_page_is_bounded_in_bytes():
    """At 1000 parameters a second a push carries a thousand rows; the backlog a late page
    gets keeps the newest rows within BACKLOG_BYTES, not ten minutes of them."""
    from engine.ui import server

    class Busy:  # a second of a game sending parameters every frame
        def build(self):
            rows = [{"uid": i, "kind": "param", "param": "intensity", "value": i / 1000,
                     "frame": 48 * i} for i in range(1000)]  # fmt: skip
            return {"timeline": rows, "responses": [], "live": {}, "graph": None,
                    "loop": None, "error": None, "health": None}  # fmt: skip

    view = server.LiveView(daemon=None, submit=lambda c: None, host="127.0.0.1", port=0)
    try:
        view.snapshots = Busy()
        for _ in range(200):
            view._push()
        held = sum(len(rows) + len(responses) for _, rows, responses in view.backlog)
        push = len(view.backlog[-1][1])
        assert view.backlog_bytes == held
        assert server.BACKLOG_BYTES - push < held <= server.BACKLOG_BYTES
        seq, body = view.message(0, {})  # a new page: the newest rows, in order
        assert seq == 200 and len(body) < server.BACKLOG_BYTES + 1000
        assert view.counters()["ui_backlog_bytes"] == held
    finally:
        view.httpd.server_close()


def test_a_view_made_but_never_served_stops_at_once():
    """The daemon makes its live view before the audio starts and serves it once sound flows:
    a daemon stopped in between stops the view without waiting for a serve loop that never
    ran, and frees its port."""
    import threading

    from engine.ui import server

    view = server.LiveView(daemon=None, submit=lambda c: None, host="127.0.0.1", port=0)
    stopper = threading.Thread(target=view.stop, daemon=True)
    stopper.start()
    stopper.join(5.0)
    assert not stopper.is_alive(), "stop() waited for a serve loop that never ran"
    again = server.LiveView(daemon=None, submit=lambda c: None, host="127.0.0.1", port=view.port)
    again.httpd.server_close()
