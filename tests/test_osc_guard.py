"""The OSC port's guard: who is answered, how often, and where notifications may go."""

from __future__ import annotations

import logging
import socket
import time
from types import SimpleNamespace

import pytest

from engine.control import osc_guard
from engine.control.osc import OscServer, encode
from engine.control.osc_guard import SenderGate, Subscribers, parse_networks


@pytest.mark.parametrize(
    ("allow", "host", "expected"),
    [
        ((), "127.0.0.1", True),
        ((), "127.8.9.10", True),
        ((), "::1", True),
        ((), "192.168.1.20", False),
        ((), "10.0.0.1", False),
        (("192.168.1.0/24",), "192.168.1.20", True),
        (("192.168.1.0/24",), "192.168.2.20", False),
        (("10.1.2.3",), "10.1.2.3", True),
        ((), "not-an-address", False),
    ],
)
def test_only_loopback_and_allowed_networks_are_answered(allow, host, expected):
    assert SenderGate(parse_networks(allow)).allowed(host) is expected


def test_a_bad_allow_value_is_named():
    with pytest.raises(ValueError, match="'192.168.1.300/24' is not an address"):
        parse_networks(["192.168.1.300/24"])


def test_expensive_requests_are_limited_per_sender(monkeypatch):
    clock = [1000.0]  # the gate's clock, moved by the test: a busy host cannot add tokens
    monkeypatch.setattr(osc_guard, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    gate = SenderGate(limits={"/segue/status": (10.0, 5.0)})
    game, flooder = ("127.0.0.1", 5000), ("127.0.0.1", 5001)
    answered = sum(gate.within_rate(flooder, "/segue/status") for _ in range(50))
    assert answered == 5  # the burst, then nothing until tokens come back
    assert gate.within_rate(game, "/segue/status")  # another socket has its own budget
    assert all(gate.within_rate(flooder, "/segue/param") for _ in range(50))  # cheap
    clock[0] += 0.25  # 10 per second: two and a half tokens back
    assert sum(gate.within_rate(flooder, "/segue/status") for _ in range(10)) == 2


def test_subscribers_are_capped_oldest_first_and_only_the_senders_own():
    subs = Subscribers(cap=3)
    for port in (1001, 1002, 1003):
        assert subs.add("127.0.0.1", port, "127.0.0.1").added
    verdict = subs.add("127.0.0.1", 1004, "127.0.0.1")
    assert verdict.evicted == ("127.0.0.1", 1001)
    assert subs.targets() == (("127.0.0.1", 1002), ("127.0.0.1", 1003), ("127.0.0.1", 1004))
    subs.add("127.0.0.1", 1002, "127.0.0.1")  # a renewal moves to the back
    assert subs.add("127.0.0.1", 1005, "127.0.0.1").evicted == ("127.0.0.1", 1003)
    refused = subs.add("203.0.113.7", 9, "127.0.0.1")
    assert not refused.added and "203.0.113.7" in refused.refused
    assert ("203.0.113.7", 9) not in subs
    assert Subscribers(cap=3, any_host=True).add("203.0.113.7", 9, "127.0.0.1").added


def _server():
    commands = []
    server = OscServer(commands.append, "127.0.0.1", 0, max_subscribers=4)
    server.start()
    return server, commands


def _settle(server, datagrams: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while server.counters.datagrams < datagrams and time.monotonic() < deadline:
        time.sleep(0.01)


def test_a_subscription_flood_over_real_udp_never_exceeds_the_cap():
    server, _ = _server()
    try:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for port in range(20000, 20100):
            sock.sendto(encode("/segue/subscribe", port), server.address)
        sock.sendto(encode("/segue/subscribe", 9, "203.0.113.7"), server.address)
        _settle(server, 101)
        assert len(server.subscribers) == 4
        assert server.counters.subscribers_evicted == 96
        assert server.counters.subscribe_refused == 1
        assert ("203.0.113.7", 9) not in server.subscribers
        sock.close()
    finally:
        server.stop()


def test_status_floods_are_dropped_over_their_rate_and_counted():
    server, commands = _server()
    try:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for _ in range(300):
            sock.sendto(encode("/segue/status"), server.address)
        _settle(server, 300)
        answered = len(commands)
        assert server.counters.rate_limited == 300 - answered
        assert 50 <= answered < 300  # the burst (50) and what refilled meanwhile
        sock.close()
    finally:
        server.stop()


def test_kernel_drops_are_counted_when_the_receive_thread_falls_behind():
    server = OscServer(lambda c: None, "127.0.0.1", 0)  # not started: nobody reads
    try:
        assert server.kernel_drops() == 0
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        payload = encode("/segue/param", "intensity", 0.5)
        # Past the receive buffer: each datagram costs its payload plus kernel overhead.
        for _ in range(2 * server.receive_buffer_bytes // len(payload)):
            sock.sendto(payload, server.address)
        assert server.kernel_drops() > 0
        sock.close()
    finally:
        server.stop()


def _non_loopback_ipv4() -> str | None:
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("192.0.2.1", 9))  # no packet is sent: this only picks a route
        address = probe.getsockname()[0]
    except OSError:
        return None
    finally:
        probe.close()
    return None if address.startswith("127.") else address


def test_a_sender_outside_loopback_is_refused_before_parsing():
    address = _non_loopback_ipv4()
    if address is None:
        pytest.skip("this machine has no non-loopback IPv4 address to send from")
    server, commands = _server()
    try:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((address, 0))
        sock.sendto(encode("/segue/event", "enemy_spotted"), server.address)
        _settle(server, 1)
        assert server.counters.refused_senders == 1 and commands == []
        sock.close()
    finally:
        server.stop()


@pytest.mark.parametrize(
    "args",
    [(), ("enemy_spotted",), ("intensity", 0.8), (1, 2.5, "x", True, False, None),
     ("héros",), (2**40,), (1.0e30,), ("a" * 3,), ("abcd",)],
)  # fmt: skip
def test_the_fast_parser_reads_what_python_osc_reads(args):
    from pythonosc.osc_message import OscMessage

    from engine.control.osc_wire import parse_message

    data = encode("/segue/event", *args)
    expected = OscMessage(data)
    assert parse_message(data) == (expected.address, list(expected.params))
    for cut in range(1, len(data)):  # every truncation is refused, never zero-padded
        if cut == 16:
            continue  # "/segue/event" and its padding alone: a valid message, no arguments
        with pytest.raises(ValueError):
            parse_message(data[:cut])
    with pytest.raises(ValueError):
        parse_message(data + b"\0\0\0\0")


def test_an_unknown_type_tag_is_malformed_and_logs_one_line_of_ours(caplog):
    """python-osc skips a tag it does not know with a warning of its own per datagram; Segue
    counts it as malformed and rate-limits its line."""
    server = OscServer(lambda c: None, "127.0.0.1", 0)
    data = b"/segue/event\0\0\0\0,sQ\0" + b"abc\0" + b"\0\0\0\0"
    with caplog.at_level(logging.WARNING):
        for _ in range(50):
            server.receive(data, ("127.0.0.1", 9))
    assert server.counters.malformed == 50
    assert not [r for r in caplog.records if "Unhandled parameter" in r.getMessage()]
    assert [r.getMessage() for r in caplog.records] == [
        "malformed OSC datagram from 127.0.0.1:9 (28 bytes): unknown type tag 'Q'"
    ]
