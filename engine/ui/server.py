"""The live view's web server: the page, a push stream (server-sent events), commands.

Standard library only (`http.server.ThreadingHTTPServer`): one thread per connection.
The control thread calls `LiveView.tick()`; at the push rate it builds a snapshot,
serialises it once and writes it to each open page's stream itself, without blocking
(`MSG_DONTWAIT`): a page that cannot take it now keeps the rest for the next push and then
skips to the latest snapshot (timeline rows are kept for a minute and sent in order), so a
slow page never holds the control thread, and no thread wakes per push but the control
thread.

Commands from the page are OSC messages by another road: `osc.to_command` checks them
against the same table and they go into the same inbox the OSC thread fills.
"""

from __future__ import annotations

import collections
import ctypes
import json
import logging
import socket
import sys
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
BACKLOG_PUSHES = 600  # a minute of timeline rows for a page that opens late ...
# ... and at most this much of them: at 1000 OSC parameters a second the rows of a minute
# take megabytes, and with no page open (a push a second) 600 pushes were ten minutes of
# them, held by the daemon (the soak's heap grew 5 MB a minute) and sent whole to a new page.
BACKLOG_BYTES = 1 << 20
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
        self.backlog: collections.deque = collections.deque()
        self.backlog_bytes = 0  # timeline rows and responses held in the backlog
        # graph, loop, error, health: each sent to a page when it changed since its last
        self.slow: dict[str, tuple[int, bytes]] = {}
        self.clients = 0
        self.pages: list[_Page] = []  # open streams, written by the control thread
        self.pushes = 0
        self.commands = 0
        self.push_ms_last = 0.0
        self.push_cpu_s = 0.0  # the control thread's CPU time spent building pushes
        self.bytes_sent = 0  # stream bytes written to pages
        self._next_push = 0.0
        self._poke = False
        self._stopping = False
        self._serving = False  # serve_forever entered (or about to): stop() must shut it down
        self._serve_lock = threading.Lock()
        self._failures = 0
        self.httpd = _Server((host, port), _handler(self))
        self.httpd.daemon_threads = True
        self.host, self.port = self.httpd.server_address[:2]
        self._thread = threading.Thread(target=self._serve, name="segue-ui", daemon=True)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def start(self) -> None:
        self._thread.start()

    def _serve(self) -> None:
        name_thread("segue-ui")
        with self._serve_lock:
            if self._stopping:  # stopped before this thread got here: the socket is closed
                return
            self._serving = True
        self.httpd.serve_forever(poll_interval=0.5)

    def stop(self) -> None:
        with self._serve_lock:
            self._stopping = True
            serving = self._serving
        with self.cond:
            for page in self.pages:
                page.closed.set()
            self.cond.notify_all()
        if serving:  # shutdown() waits for a serve_forever: only one that runs or will
            self.httpd.shutdown()
        self.httpd.server_close()

    # -- control thread ----------------------------------------------------------------

    def tick(self) -> None:
        """Push a snapshot if one is due and a page is open. Never raises. Nothing before the
        view is served: the daemon makes it while the audio starts."""
        if not self._serving:
            return
        now = time.monotonic()
        if now < self._next_push and not self._poke:
            return
        poked, self._poke = self._poke, False
        if self.clients == 0 and self.seq > 0 and not poked:
            self._next_push = now + IDLE_PUSH_SECONDS  # keeps the last minute for a late page
        else:
            # On a 10 Hz grid: a push the control thread made late does not delay the next.
            due = self._next_push if now - self._next_push < PUSH_SECONDS else now
            self._next_push = due + PUSH_SECONDS
            if poked:
                self._next_push = min(self._next_push, now + 0.02)  # a second look soon
        try:
            self._push()
        except Exception:  # noqa: BLE001 - the page is a view: it must never stop the music
            self._failures += 1
            if self._failures in (1, 10, 100):
                log.exception("live view snapshot failed (%d so far)", self._failures)

    def _push(self) -> None:
        t0, cpu0 = time.perf_counter(), time.thread_time()
        snap = self.snapshots.build()
        if snap["health"] is not None:
            snap["health"] |= self.counters()
        dumps = _dumps
        timeline = ",".join(dumps(row) for row in snap["timeline"]).encode()
        responses = ",".join(dumps(row) for row in snap["responses"]).encode()
        live = dumps(snap["live"]).encode()
        seq = self.seq + 1
        slow = dict(self.slow)
        for key in ("graph", "loop", "error", "health"):
            if snap[key] is not None:
                slow[key] = (seq, dumps(snap[key]).encode())
        with self.cond:
            self.slow = slow
            self.live = live
            self.backlog.append((seq, timeline, responses))
            self.backlog_bytes += len(timeline) + len(responses)
            while len(self.backlog) > BACKLOG_PUSHES or (self.backlog_bytes > BACKLOG_BYTES
                                                         and len(self.backlog) > 1):  # fmt: skip
                _, old_rows, old_responses = self.backlog.popleft()
                self.backlog_bytes -= len(old_rows) + len(old_responses)
            self.seq = seq
            self.pushes += 1
            pages = list(self.pages)
        for page in pages:
            self._write(page)
        self.push_ms_last = (time.perf_counter() - t0) * 1000
        self.push_cpu_s += time.thread_time() - cpu0

    def _write(self, page: _Page) -> None:
        """Send a page what it has not seen, as far as its socket takes it now (never waits)."""
        if not page.unsent:
            page.seq, body = self.message(page.seq, page.slow_sent)
            page.unsent = b"data: " + body + b"\n\n"
        try:
            sent = page.sock.send(page.unsent, socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return  # the page is behind: the rest goes with the next push
        except OSError:
            page.closed.set()  # gone: its handler thread ends the stream
            with self.cond:
                if page in self.pages:
                    self.pages.remove(page)
            return
        self.bytes_sent += sent
        page.unsent = page.unsent[sent:]

    def counters(self) -> dict:
        """The live view's own figures (the page shows them; benchmarks/ui.py reads them)."""
        return {"ui_pushes": self.pushes, "ui_commands": self.commands,
                "ui_pages": self.clients, "ui_push_ms": round(self.push_ms_last, 3),
                "ui_push_cpu_s": round(self.push_cpu_s, 6),
                "ui_bytes": self.bytes_sent, "ui_backlog_bytes": self.backlog_bytes}  # fmt: skip

    # -- stream threads ----------------------------------------------------------------

    def message(self, since: int, slow_sent: dict[str, int]) -> tuple[int, bytes]:
        """Everything a page that has seen push `since` needs, as one JSON object."""
        rows: list[bytes] = []
        responses: list[bytes] = []
        with self.cond:
            seq, live, slow = self.seq, self.live, self.slow
            for s, row, response in reversed(self.backlog):  # newest first: a page is behind
                if s <= since:  # by one push, a new page by the whole backlog
                    break
                if row:
                    rows.append(row)
                if response:
                    responses.append(response)
        rows.reverse()
        responses.reverse()
        parts = [b'{"seq":%d,"live":' % seq, live, b',"timeline":[', b",".join(rows),
                 b'],"responses":[', b",".join(responses), b"]"]  # fmt: skip
        for key, (version, body) in slow.items():
            if slow_sent.get(key) != version:
                slow_sent[key] = version
                parts += [b',"%s":' % key.encode(), body]
        parts.append(b"}")
        return seq, b"".join(parts)

    def attach(self, page: _Page) -> None:
        with self.cond:
            self.pages.append(page)
            self.clients += 1
        self._poke = True  # its first push (the graph, the last minute) comes at once

    def detach(self, page: _Page) -> None:
        with self.cond:
            if page in self.pages:
                self.pages.remove(page)
            self.clients -= 1

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


class _Page:
    """One open page's push stream (the control thread writes it)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.seq = 0  # the last push it was sent
        self.slow_sent: dict[str, int] = {}  # graph, loop, error, health: versions sent
        self.unsent = b""  # what its socket has not taken yet
        self.closed = threading.Event()


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        """A page that went away mid-answer is routine: one debug line, no traceback."""
        log.debug("live view: a request from %s ended early", client_address[0], exc_info=True)


def name_thread(name: str) -> None:
    """Give the calling thread a name the OS shows (/proc/PID/task/TID/comm), so the live
    view's threads can be told apart from the music's when their CPU is measured."""
    if sys.platform != "linux":
        return
    try:
        ctypes.CDLL(None).prctl(15, name.encode()[:15], 0, 0, 0)  # PR_SET_NAME
    except (OSError, AttributeError):
        pass


def _dumps(value) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)


def _handler(view: LiveView):
    class Handler(BaseHTTPRequestHandler):
        server_version = "segue"
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            name_thread("segue-ui-http")
            super().setup()

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
            if path == "/api/snapshot":  # what a new page gets, and the counters as of now
                body = view.message(0, {})[1][:-1] + b',"ui":%s}' % _dumps(view.counters()).encode()
                return self._send(200, body, "application/json")
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
            try:
                self.wfile.write(b"retry: 1000\n\n")
            except OSError:
                return
            page = _Page(self.connection)
            view.attach(page)
            try:
                # The control thread writes the pushes; this thread only holds the connection
                # open until the page goes away (a failed write) or the daemon stops.
                while not page.closed.wait(5.0) and not view._stopping:
                    pass
            finally:
                view.detach(page)

    return Handler
