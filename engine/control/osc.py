"""The OSC boundary: UDP datagrams in, typed commands out, replies back.

One table (`engine/control/addresses.py`) says what each address takes; it drives both
checking and building commands. A datagram that is not OSC, an unknown address or wrong
argument types is counted and logged (rate-limited) — never a crash, never a stall. Nothing
in the receive path sleeps: a future-dated bundle becomes a command with a due time.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from pythonosc.osc_bundle_builder import OscBundleBuilder
from pythonosc.osc_message import OscMessage
from pythonosc.osc_message_builder import OscMessageBuilder
from pythonosc.osc_packet import OscPacket, ParseError

from engine.control import commands as cmd
from engine.control.addresses import BadMessage, to_command
from engine.control.osc_guard import (
    DEFAULT_MAX_SUBSCRIBERS,
    SenderGate,
    Subscribers,
    enlarge_receive_buffer,
    kernel_drops,
)
from engine.control.osc_wire import encode_strings, message_length, parse_message

log = logging.getLogger("segue.osc")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 9000
MAX_DATAGRAM = 65536
BUSY_WINDOW_S = 0.02  # the receive thread's CPU is measured over windows this long ...
BUSY_SHARE = 0.5  # ... and it only sheds once it was busy this share of one
SHED_SHARE = 0.25  # ... and rests once shedding (reading only) took this share more
ALWAYS_PARSED = (b"/segue/status", b"/segue/ping")  # parsed even while shedding


class Double(float):
    """A float sent as OSC's 64-bit `d` (python-osc sends a plain float as 32-bit `f`, whose
    resolution at a clock reading of hours is milliseconds)."""


def encode(address: str, *args) -> bytes:
    if all(type(arg) is str for arg in args):  # status, errors, reload answers
        return encode_strings(address, *args)
    builder = OscMessageBuilder(address)
    for arg in args:
        if isinstance(arg, Double):
            builder.add_arg(float(arg), builder.ARG_TYPE_DOUBLE)
        else:
            builder.add_arg(arg)
    return builder.build().dgram


@dataclass
class OscCounters:
    datagrams: int = 0
    messages: int = 0
    malformed: int = 0
    unknown_address: int = 0
    bad_args: int = 0
    scheduled: int = 0
    replies: int = 0
    notifications: int = 0
    send_errors: int = 0
    refused_senders: int = 0  # datagrams from outside loopback and --allow: not parsed
    rate_limited: int = 0  # status/reload requests over a sender's budget
    subscribe_refused: int = 0  # subscriptions naming another host than the sender's
    subscribers_evicted: int = 0  # the oldest, when a new one came at the cap
    busy_windows: int = 0  # windows in which the receive thread spent its parse budget
    shed: int = 0  # datagrams read past that budget and dropped unparsed (not status or ping)


class RateLimitedLog:
    """At most one line per reason per interval; says how many were suppressed."""

    def __init__(self, logger: logging.Logger, interval_s: float = 1.0) -> None:
        self.logger = logger
        self.interval_s = interval_s
        self.last: dict[str, tuple[float, int]] = {}

    def warning(self, key: str, message: str) -> None:
        now = time.monotonic()
        last, suppressed = self.last.get(key, (0.0, 0))
        if now - last < self.interval_s:
            self.last[key] = (last, suppressed + 1)
            return
        extra = f" ({suppressed} more like this suppressed)" if suppressed else ""
        self.logger.warning("%s%s", message, extra)
        self.last[key] = (now, 0)


class OscServer:
    """Receives on a UDP socket in its own thread and hands commands to `on_command`."""

    def __init__(
        self,
        on_command: Callable[[cmd.Command], None],
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        *,
        allow: tuple = (),
        max_subscribers: int = DEFAULT_MAX_SUBSCRIBERS,
        subscribe_any_host: bool = False,
    ) -> None:
        self.on_command = on_command
        self.counters = OscCounters()
        self.gate = SenderGate(allow)
        self.subscribers = Subscribers(max_subscribers, subscribe_any_host)
        self._log = RateLimitedLog(log)
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        # A burst the receive thread cannot keep up with waits here instead of being dropped.
        self.receive_buffer_bytes = enlarge_receive_buffer(self._sock)
        self._sock.bind((host, port))
        self._sock.settimeout(0.2)
        self.address = self._sock.getsockname()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="segue-osc", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2)
        self._sock.close()

    def _serve(self) -> None:
        """Receive thread. Under a flood it parses for at most BUSY_SHARE of each window of
        its own CPU time (reads included), then sheds until the window ends: it reads on,
        so the socket's buffer keeps room and the kernel drops less, but parses only
        `/segue/status` and `/segue/ping` (a prefix test) and drops the rest, counted. Past
        SHED_SHARE more it rests until the window ends. So a flood costs the audio and control
        threads little of the GIL (a read holds it for a microsecond), the thread never takes
        more than BUSY_SHARE + SHED_SHARE of a core, and a game's status request gets through
        a flood the thread can read."""
        budget, shed_budget = BUSY_SHARE * BUSY_WINDOW_S, SHED_SHARE * BUSY_WINDOW_S
        window_start, cpu_start = time.perf_counter(), time.thread_time()
        shedding = False
        while not self._stop.is_set():
            try:
                data, sender = self._sock.recvfrom(MAX_DATAGRAM)
            except TimeoutError:
                continue
            except OSError:
                if self._stop.is_set():
                    return
                continue
            if not shedding or data.startswith(ALWAYS_PARSED):
                self.receive(data, sender)
            else:
                self.counters.datagrams += 1
                self.counters.shed += 1
            now = time.perf_counter()
            if now - window_start >= BUSY_WINDOW_S:
                window_start, cpu_start, shedding = now, time.thread_time(), False
                continue
            busy = time.thread_time() - cpu_start
            if not shedding and busy > budget:
                shedding = True
                self.counters.busy_windows += 1
            elif shedding and busy > budget + shed_budget:  # a flood beyond reading: rest,
                time.sleep(window_start + BUSY_WINDOW_S - now)  # the kernel drops (counted)

    def receive(self, data: bytes, sender: tuple[str, int]) -> None:
        """Parse and dispatch one datagram (receive thread). Never raises."""
        received_ns = time.monotonic_ns()
        self.counters.datagrams += 1
        if not self.gate.allowed(sender[0]):
            self.counters.refused_senders += 1
            self._log.warning(
                "refused",
                f"OSC from {sender[0]}:{sender[1]} refused: not loopback nor an --allow network",
            )
            return
        try:
            # Cheap check first: an OSC packet starts with '/' (message) or '#' (bundle).
            if not data or data[:1] not in (b"/", b"#"):
                raise ParseError("not an OSC message or bundle")
            parsed = parse_message(data) if data[:1] == b"/" else None
            if parsed is not None:
                timed = [(parsed[0], parsed[1], 0.0)]
            else:
                timed = [
                    (m.message.address, list(m.message.params), m.time)
                    for m in OscPacket(data).messages
                ]
                # python-osc zero-pads a truncated argument (for a synth that omits padding):
                # a cut-off "/segue/param intensity 0.8" would read as 0.0. Be strict.
                if data[:1] == b"/" and message_length(data) != len(data):
                    raise ParseError("truncated message or trailing bytes")
        except (ParseError, Exception) as exc:  # noqa: B014 - any parse failure is the sender's
            self.counters.malformed += 1
            self._log.warning(
                "malformed",
                f"malformed OSC datagram from {sender[0]}:{sender[1]} ({len(data)} bytes): {exc}",
            )
            return
        wall_now = time.time()
        for address, params, at in timed:
            self.counters.messages += 1
            due_ns = 0
            if at > wall_now + 0.001:
                due_ns = received_ns + int((at - wall_now) * 1e9)
                self.counters.scheduled += 1
            try:
                command = to_command(address, params, sender, received_ns, due_ns)
            except BadMessage as exc:
                setattr(self.counters, exc.counter, getattr(self.counters, exc.counter) + 1)
                self._log.warning(exc.counter, f"OSC from {sender[0]}:{sender[1]}: {exc}")
                continue
            if not self.gate.within_rate(sender, address):
                self.counters.rate_limited += 1
                self._log.warning(
                    "rate", f"{address} from {sender[0]} over its rate limit; dropped"
                )
                continue
            if command is None:
                ping_id = params[0] if params else 0
                self.send(sender, "/segue/pong", ping_id, Double(time.monotonic_ns() / 1e9))
                continue
            if isinstance(command, cmd.Subscribe):
                self._subscribe(command, sender)
                continue
            if isinstance(command, cmd.Unsubscribe):
                self.subscribers.remove(command.host, command.port)
                continue
            self.on_command(command)

    def _subscribe(self, command: cmd.Subscribe, sender: tuple[str, int]) -> None:
        verdict = self.subscribers.add(command.host, command.port, sender[0])
        if verdict.refused:
            self.counters.subscribe_refused += 1
            self._log.warning("subscribe", f"subscription refused: {verdict.refused}")
            self.send(sender, "/segue/error", verdict.refused)
        elif verdict.evicted is not None:
            self.counters.subscribers_evicted += 1
            self._log.warning(
                "evicted",
                f"{len(self.subscribers)} subscribers: the oldest, "
                f"{verdict.evicted[0]}:{verdict.evicted[1]}, makes room",
            )

    def kernel_drops(self) -> int | None:
        """Datagrams the kernel dropped before this thread could read them (any thread)."""
        return kernel_drops(self._sock)

    def send(self, to: tuple[str, int], address: str, *args) -> None:
        try:
            self._sock.sendto(encode(address, *args), to)
            self.counters.replies += 1
        except OSError as exc:
            self.counters.send_errors += 1
            self._log.warning("send", f"could not send {address} to {to[0]}:{to[1]}: {exc}")

    def reply_json(self, to: tuple[str, int], address: str, payload: dict) -> None:
        self.send(to, address, json.dumps(payload, separators=(",", ":"), default=str))

    def notify(self, address: str, *args, timetag: float | None = None) -> None:
        """Send to every subscriber; with `timetag` (seconds since the epoch), as a bundle
        stamped with the moment the music it describes is heard."""
        targets = self.subscribers.targets()
        if not targets:
            return
        data = encode(address, *args)
        if timetag is not None:
            bundle = OscBundleBuilder(timetag)
            bundle.add_content(OscMessage(data))
            data = bundle.build().dgram
        for subscriber in targets:
            try:
                self._sock.sendto(data, subscriber)
                self.counters.notifications += 1
            except OSError as exc:
                self.counters.send_errors += 1
                self._log.warning(
                    "send", f"could not notify {subscriber[0]}:{subscriber[1]}: {exc}"
                )
