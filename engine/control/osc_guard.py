"""What the OSC port lets in and sends out: allowed senders, per-sender rate limits on the
expensive requests, a capped list of subscribers, and the kernel's own drop count.

Segue listens on loopback unless told otherwise. Bound wider (`--host 0.0.0.0`), it still
answers only loopback and the networks named with `--allow CIDR`, so a stray or hostile
sender costs one dictionary look-up per datagram, never a parse. Notifications go only to
the address a subscription came from (unless `--subscribe-any-host`), and to at most
`max_subscribers` of them: a spoofed subscription cannot aim Segue's traffic elsewhere, and
a flood of subscriptions cannot make it send without bound.

Receive thread only (`SenderGate`, `Subscribers.add/remove`); `Subscribers.targets()` is a
tuple the control thread may iterate while the receive thread replaces it.
"""

from __future__ import annotations

import ipaddress
import os
import time
from dataclasses import dataclass

LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))
DEFAULT_MAX_SUBSCRIBERS = 32
# Requests that cost the control thread real work: (per second, burst) for each sender.
RATE_LIMITS = {"/segue/status": (50.0, 50.0), "/segue/reload": (5.0, 10.0)}
MAX_SENDERS_REMEMBERED = 4096  # verdicts and buckets kept, then forgotten all at once
RECEIVE_BUFFER_BYTES = 8 << 20


def parse_networks(cidrs: list[str] | tuple[str, ...]) -> tuple:
    """`--allow` values as networks; a ValueError names the one that is not a network."""
    networks = []
    for text in cidrs:
        try:
            networks.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            raise ValueError(
                f"--allow {text!r} is not an address or network (e.g. 192.168.1.0/24)"
            ) from None
    return tuple(networks)


class SenderGate:
    """Allowed senders and per-sender token buckets, checked before a datagram is parsed."""

    def __init__(self, allow: tuple = (), limits: dict | None = None) -> None:
        self.networks = LOOPBACK + tuple(allow)
        self.limits = RATE_LIMITS if limits is None else limits
        self._verdicts: dict[str, bool] = {}
        self._buckets: dict[tuple[str, str], list[float]] = {}

    def allowed(self, host: str) -> bool:
        verdict = self._verdicts.get(host)
        if verdict is None:
            if len(self._verdicts) >= MAX_SENDERS_REMEMBERED:
                self._verdicts.clear()
            try:
                ip = ipaddress.ip_address(host.split("%", 1)[0])
            except ValueError:
                ip = None
            verdict = ip is not None and any(ip in net for net in self.networks)
            self._verdicts[host] = verdict
        return verdict

    def within_rate(self, sender: tuple[str, int], address: str) -> bool:
        """False when `sender` (host, port: one socket) has spent its budget for `address`
        (a token bucket). Per socket, not per host: a flooding program on the game's machine
        must not silence the game's own requests."""
        limit = self.limits.get(address)
        if limit is None:
            return True
        rate, burst = limit
        now = time.monotonic()
        key = (sender, address)
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= MAX_SENDERS_REMEMBERED:
                self._buckets.clear()
            bucket = self._buckets[key] = [burst, now]
        tokens = min(burst, bucket[0] + (now - bucket[1]) * rate)
        bucket[1] = now
        if tokens < 1.0:
            bucket[0] = tokens
            return False
        bucket[0] = tokens - 1.0
        return True


@dataclass
class SubscribeVerdict:
    added: bool
    evicted: tuple[str, int] | None = None
    refused: str = ""


class Subscribers:
    """Where notifications go: at most `cap` addresses, the oldest evicted first."""

    def __init__(self, cap: int = DEFAULT_MAX_SUBSCRIBERS, any_host: bool = False) -> None:
        self.cap = cap
        self.any_host = any_host
        self._order: dict[tuple[str, int], None] = {}  # insertion order: oldest first
        self._targets: tuple[tuple[str, int], ...] = ()

    def add(self, host: str, port: int, sender_host: str) -> SubscribeVerdict:
        if host != sender_host and not self.any_host:
            return SubscribeVerdict(
                False,
                refused=f"a subscription for {host} came from "
                f"{sender_host}; notifications go only to the sender "
                "(--subscribe-any-host allows others)",
            )
        key = (host, port)
        evicted = None
        self._order.pop(key, None)  # a renewal moves to the back
        if len(self._order) >= self.cap:
            evicted = next(iter(self._order))
            del self._order[evicted]
        self._order[key] = None
        self._targets = tuple(self._order)
        return SubscribeVerdict(True, evicted)

    def remove(self, host: str, port: int) -> None:
        if self._order.pop((host, port), 0) is None:
            self._targets = tuple(self._order)

    def targets(self) -> tuple[tuple[str, int], ...]:
        return self._targets

    def __len__(self) -> int:
        return len(self._targets)

    def __contains__(self, key: tuple[str, int]) -> bool:
        return key in self._order


def enlarge_receive_buffer(sock, size_bytes: int = RECEIVE_BUFFER_BYTES) -> int:
    """Ask for a large receive buffer (past rmem_max when allowed); returns what we got."""
    import socket

    force = getattr(socket, "SO_RCVBUFFORCE", None)
    try:
        if force is None:
            raise PermissionError
        sock.setsockopt(socket.SOL_SOCKET, force, size_bytes)
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size_bytes)
    return sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)


def kernel_drops(sock) -> int | None:
    """Datagrams the kernel dropped on this socket (its receive buffer was full), from
    /proc/net/udp{,6}'s `drops` column; None where that is not available."""
    try:
        inode = str(os.fstat(sock.fileno()).st_ino)
    except OSError:
        return None
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    if len(fields) > 12 and fields[9] == inode:
                        return int(fields[12])
        except (OSError, StopIteration, ValueError):
            continue
    return None
