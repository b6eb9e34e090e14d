"""The live view's web server: the page, a push stream (server-sent events), commands.

Standard library only (`http.server.ThreadingHTTPServer`): one thread per connection.
The control thread calls `LiveView.tick()`; at the push rate, and only while a page is
open, it builds a snapshot, serialises it once and wakes the stream threads. A stream
thread writes at its client's pace and skips to the latest snapshot (timeline rows are
kept for a minute and sent in order), so a slow page never holds the control thread.

Commands from the page are OSC messages by another road: `osc.to_command` checks them
against the same table and they go into the same inbox the OSC thread fills.
"""

from __future__ import annotations

import collections
import json
import logging
import threading
import time
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

from engine.control import osc
from engine.ui.snapshot import Snapshots

log = logging.getLogger("segue.ui")

DEFAULT_UI_HOST = "127.0.0.1"
DEFAULT_UI_PORT = 8765
PUSH_SECONDS = 0.1  # 10 pushes a second
IDLE_PUSH_SECONDS = 1.0  # with no page open
BACKLOG_PUSHES = 600  # a minute of timeline rows for a page that opens late
STATIC = Path(__file__).resolve().parent / "static"
TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".txt": "text/plain; charset=utf-8",
}
# What the page may send: what a game sends, less the replies and subscriptions.
PAGE_ADDRESSES = ("/segue/event", "/segue/state", "/segue/param", "/segue/stinger",
                  "/segue/reload", "/segue/mute", "/segue/solo")  # fmt: skip
LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")


class LiveView:
    """Serves the page on (host, port) for one daemon; `tick()` from the control thread."""

    def __init__(self, daemon, submit, host: str = DEFAULT_UI_HOST,
                 port: int = DEFAULT_UI_PORT) -> None:  # fmt: skip
        self.snapshots = Snapshots(daemon)
        self.submit = submit  # the daemon's inbox.put: the OSC thread's road
        self.files = {p.name: p for p in STATIC.iterdir() if p.suffix in TYPES}
        self.cond = threading.Condition()
        self.seq = 0
        self.live = b"{}"
        self.backlog: collections.deque = collections.deque(maxlen=BACKLOG_PUSHES)
        self.slow: dict[str, tuple[int, bytes]] = {}  # graph, loop, error: sent when changed
        self.clients = 0
        self.pushes = 0
        self.commands = 0
        self.push_ms_last = 0.0
        self._next_push = 0.0
        self._poke = False
        self._stopping = False
        self._failures = 0
        self.httpd = _Server((host, port), _handler(self))
        self.httpd.daemon_threads = True
        self.host, self.port = self.httpd.server_address[:2]
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.2}, name="segue-ui",
            daemon=True,
        )  # fmt: skip

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping = True
        with self.cond:
            self.cond.notify_all()
        self.httpd.shutdown()
        self.httpd.server_close()

    # -- control thread ----------------------------------------------------------------

    def tick(self) -> None:
        """Push a snapshot if one is due and a page is open. Never raises."""
        now = time.monotonic()
        if now < self._next_push and not self._poke:
            return
        if self.clients == 0 and self.seq > 0 and not self._poke:
            self._next_push = now + IDLE_PUSH_SECONDS  # keeps the last minute for a late page
        else:
            self._next_push = now + (0.02 if self._poke else PUSH_SECONDS)  # a second look soon
        self._poke = False
        try:
            self._push()
        except Exception:  # noqa: BLE001 - the page is a view: it must never stop the music
            self._failures += 1
            if self._failures in (1, 10, 100):
                log.exception("live view snapshot failed (%d so far)", self._failures)

    def _push(self) -> None:
        t0 = time.perf_counter()
        snap = self.snapshots.build()
        snap["live"] |= {
            "ui_pushes": self.pushes,
            "ui_commands": self.commands,
            "ui_pages": self.clients,
            "ui_push_ms": round(self.push_ms_last, 3),
        }
        dumps = _dumps
        timeline = ",".join(dumps(row) for row in snap["timeline"]).encode()
        responses = ",".join(dumps(row) for row in snap["responses"]).encode()
        live = dumps(snap["live"]).encode()
        seq = self.seq + 1
        slow = dict(self.slow)
        for key in ("graph", "loop", "error"):
            if snap[key] is not None:
                slow[key] = (seq, dumps(snap[key]).encode())
        with self.cond:
            self.slow = slow
            self.live = live
            self.backlog.append((seq, timeline, responses))
            self.seq = seq
            self.pushes += 1
            self.cond.notify_all()
        self.push_ms_last = (time.perf_counter() - t0) * 1000

    # -- stream threads ----------------------------------------------------------------

    def message(self, since: int, slow_sent: dict[str, int]) -> tuple[int, bytes]:
        """Everything a page that has seen push `since` needs, as one JSON object."""
        with self.cond:
            seq, live, slow = self.seq, self.live, self.slow
            rows = [b for s, b, _ in self.backlog if s > since and b]
            responses = [b for s, _, b in self.backlog if s > since and b]
        parts = [b'{"seq":%d,"live":' % seq, live, b',"timeline":[', b",".join(rows),
                 b'],"responses":[', b",".join(responses), b"]"]  # fmt: skip
        for key, (version, body) in slow.items():
            if slow_sent.get(key) != version:
                slow_sent[key] = version
                parts += [b',"%s":' % key.encode(), body]
        parts.append(b"}")
        return seq, b"".join(parts)

    def wait(self, seq: int, timeout_s: float) -> bool:
        with self.cond:
            if self.seq == seq and not self._stopping:
                self.cond.wait(timeout_s)
            return not self._stopping

    # -- commands ----------------------------------------------------------------------

    def command(self, body: dict) -> tuple[int, dict]:
        """Check a command from the page like an OSC message; queue it for the control thread."""
        address = body.get("address") if isinstance(body, dict) else None
        args = body.get("args", []) if isinstance(body, dict) else None
        if address not in PAGE_ADDRESSES or not isinstance(args, list):
            return 400, {"error": f"the page may send {', '.join(PAGE_ADDRESSES)} with a list "
                                  "of arguments"}  # fmt: skip
        try:
            command = osc.to_command(address, args, ("127.0.0.1", 0), time.monotonic_ns())
        except osc.BadMessage as exc:
            return 400, {"error": str(exc)}
        self.submit(replace(command, reply_to=None))
        self.commands += 1
        self._poke = True
        return 202, {"queued": address}


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        """A page that went away mid-answer is routine: one debug line, no traceback."""
        log.debug("live view: a request from %s ended early", client_address[0], exc_info=True)


def _dumps(value) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)


def _handler(view: LiveView):
    class Handler(BaseHTTPRequestHandler):
        server_version = "segue"
        protocol_version = "HTTP/1.1"

        def log_message(self, format, *args):  # noqa: A002 - quiet: the daemon's log is for music
            log.debug("%s %s", self.address_string(), format % args)

        def _allowed_host(self) -> bool:
            """Refuse a page from another site that reaches us by a rebound name."""
            if view.host not in ("127.0.0.1", "::1", "localhost"):
                return True
            host = urlsplit("//" + (self.headers.get("Host") or "")).hostname or ""
            if host not in ("127.0.0.1", "localhost", "::1"):
                return False
            origin = self.headers.get("Origin")
            return origin is None or urlsplit(origin).hostname in ("127.0.0.1", "localhost", "::1")

        def _send(self, code: int, body: bytes, kind: str, cache: bool = False) -> None:
            self.send_response(code)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "max-age=60" if cache else "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.end_headers()
            self.wfile.write(body)

        def _json(self, code: int, payload: dict) -> None:
            self._send(code, _dumps(payload).encode(), "application/json")

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            if not self._allowed_host():
                return self._json(403, {"error": "this page answers on loopback names only"})
            path = urlsplit(self.path).path
            if path == "/events":
                return self._stream()
            if path == "/api/snapshot":
                return self._send(200, view.message(0, {})[1], "application/json")
            name = "index.html" if path == "/" else path.removeprefix("/static/")
            file = view.files.get(name) if "/" not in name else None
            if file is None:
                return self._json(404, {"error": f"no such page: {path}"})
            self._send(200, file.read_bytes(), TYPES[file.suffix])

        def do_POST(self) -> None:  # noqa: N802
            if not self._allowed_host():
                return self._json(403, {"error": "this page answers on loopback names only"})
            if urlsplit(self.path).path != "/api/command":
                return self._json(404, {"error": f"no such address: {self.path}"})
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                length = 0
            if not 0 < length <= 4096:
                return self._json(400, {"error": "a command is a small JSON object"})
            try:
                body = json.loads(self.rfile.read(length))
            except ValueError:
                return self._json(400, {"error": "a command is a JSON object"})
            code, payload = view.command(body)
            self._json(code, payload)

        def _stream(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.close_connection = True
            with view.cond:
                view.clients += 1
            seq, slow_sent = 0, {}
            try:
                self.wfile.write(b"retry: 1000\n\n")
                while view.wait(seq, 1.0):
                    if view.seq == seq:
                        self.wfile.write(b": idle\n\n")  # keeps proxies and dead peers honest
                        self.wfile.flush()
                        continue
                    seq, body = view.message(seq, slow_sent)
                    self.wfile.write(b"data: " + body + b"\n\n")
                    self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError, TimeoutError, OSError):
                pass
            finally:
                with view.cond:
                    view.clients -= 1

    return Handler
