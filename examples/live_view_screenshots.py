"""Take the README's pictures of the live view: a daemon on a copy of the demo graph,
Debian's Chromium (headless, through Playwright), a short session, two screenshots.

    python examples/live_view_screenshots.py [--out docs] [--no-model]
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from engine.control.osc import encode  # noqa: E402

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]  # fmt: skip


def status(port: int) -> dict | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(0.5)
        sock.sendto(encode("/segue/status"), ("127.0.0.1", port))
        try:
            data, _ = sock.recvfrom(65536)
        except OSError:
            return None
    from pythonosc.osc_packet import OscPacket

    return json.loads(OscPacket(data).messages[0].message.params[0])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs")
    parser.add_argument("--no-model", action="store_true")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="segue-shots-"))
    shutil.copytree(REPO / "statemachines", folder / "statemachines")
    graph = folder / "statemachines" / "game.yaml"
    port = 9391
    command = [sys.executable, "-m", "engine", "run", "--graph", str(graph), "--port",
               str(port), "--output", "null", "--ui-port", "0",
               *(["--no-model"] if args.no_model else [])]  # fmt: skip
    daemon = subprocess.Popen(command, cwd=REPO, stdin=subprocess.DEVNULL)
    try:
        url = None
        while url is None:
            if daemon.poll() is not None:
                return 1
            url = (status(port) or {}).get("ui")
        from playwright.sync_api import sync_playwright

        with sync_playwright() as p:
            browser = p.chromium.launch_persistent_context(
                str(folder / "profile"), executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS,
                headless=True, viewport={"width": 1360, "height": 1000},
            )  # fmt: skip
            page = browser.new_page()
            page.goto(url)
            page.wait_for_selector("g.node.current")
            session = (
                ('button[data-event="explore"]', 7),
                ('[data-param="intensity"]', 2),
                ('button[data-stinger="hit"]', 2),
                ('button[data-mute="lead"]', 1),
                ('button[data-event="enemy_spotted"]', 0.15),
            )
            for action, wait_s in session:
                if "data-param" in action:
                    page.fill(action, "0.9")  # a slider moved: the curve and the rule fire
                else:
                    page.click(action)
                time.sleep(wait_s)
            page.click('button[data-event="enemy_defeated"]')
            page.wait_for_selector("g.node.pending", timeout=5000)  # the countdown shows
            args.out.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(args.out / "live-view.png"), full_page=True)
            text = graph.read_text()
            graph.write_text(text.replace("    tempo: 144\n", "    tempo: fast\n"))
            page.wait_for_selector("#error:not([hidden])", timeout=10000)
            time.sleep(0.3)
            page.screenshot(path=str(args.out / "live-view-error.png"),
                            clip={"x": 0, "y": 0, "width": 1360, "height": 560})  # fmt: skip
            graph.write_text(text)
            browser.close()
    finally:
        daemon.terminate()
        daemon.wait(15)
        shutil.rmtree(folder, ignore_errors=True)
    print(f"wrote {args.out / 'live-view.png'} and {args.out / 'live-view-error.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
