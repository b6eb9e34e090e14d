"""The OSC address space, one row per address.

A row says what the address takes, the command it builds, the Conductor method that applies
that command, the Daemon method that answers the sender (if any), and how the README shows
it. The table drives checking and building commands
at the OSC boundary (`to_command`), the Conductor's dispatch, the session scripts of
`segue render --events` (`from_script`) and the README's address table (`markdown`; a test
keeps the README in step). Adding an address is one row here and its handler.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import StrEnum

from engine.control import commands as cmd


class Kind(StrEnum):
    STRING = "string"
    NUMBER = "number"
    INT = "int"
    ANY = "any"

    def accepts(self, value: object) -> bool:
        if self is Kind.STRING:
            return isinstance(value, str)
        if self is Kind.INT:
            return isinstance(value, int) and not isinstance(value, bool)
        if self is Kind.NUMBER:
            return isinstance(value, int | float) and not isinstance(value, bool)
        return True


class BadMessage(ValueError):
    """Why a message was refused (becomes a counter and a log line)."""

    def __init__(self, counter: str, reason: str) -> None:
        super().__init__(reason)
        self.counter = counter


@dataclass(frozen=True)
class Arg:
    name: str  # also its key in a session script
    kind: Kind


@dataclass(frozen=True)
class Address:
    address: str
    required: tuple[Arg, ...]
    optional: tuple[Arg, ...]
    command: type[cmd.Command] | None  # None: answered in the OSC receive thread (ping)
    build: Callable[[list, tuple[str, int]], tuple]  # (args, sender) -> the command's fields
    handler: str | None  # the Conductor method that applies it; None: the OSC thread does
    shown: str  # the arguments as the README shows them
    effect: str
    reply: str | None = None  # the Daemon method that answers the sender (else: errors only)

    @property
    def key(self) -> str:
        """Its name in a session script: `- {at: 2.0, event: enemy_spotted}`."""
        return self.address.rsplit("/", 1)[1]


def _port(args: list, sender: tuple[str, int]) -> tuple[str, int]:
    port = args[0]
    if not 1 <= port <= 65535:
        raise BadMessage("bad_args", f"port {port} is out of range")
    return (args[1] if len(args) > 1 else sender[0], port)


S, N, I, A = Kind.STRING, Kind.NUMBER, Kind.INT, Kind.ANY  # noqa: E741

# fmt: off
ROWS: tuple[Address, ...] = (
    Address("/segue/event", (Arg("name", S),), (Arg("args", A),) * 8, cmd.Event,
            lambda a, _: (a[0], tuple(a[1:])), "on_event", "name, [args…]",
            "a game event; fires the matching transition (or stinger)"),
    Address("/segue/state", (Arg("name", S),), (), cmd.SetState,
            lambda a, _: (a[0],), "on_state", "name",
            "force a state now (with the fades of the rule between the two states, if any)"),
    Address("/segue/param", (Arg("name", S), Arg("value", N)), (), cmd.SetParam,
            lambda a, _: (a[0], float(a[1])), "on_param", "name, number",
            "a continuous parameter (clamped to its range)"),
    Address("/segue/stinger", (Arg("name", S),), (), cmd.PlayStinger,
            lambda a, _: (a[0],), "on_stinger", "name",
            "play a stinger, quantized and in the current key"),
    Address("/segue/mute", (Arg("part", S), Arg("muted", I)), (), cmd.MutePart,
            lambda a, _: (a[0], bool(a[1])), "on_mute", "part, 0\\|1",
            "mute or unmute a part (drums, bass, pad, lead) of every loop, in 50 ms"),
    Address("/segue/solo", (Arg("part", S),), (), cmd.SoloPart,
            lambda a, _: (a[0],), "on_mute", "part",
            "hear only this part; an empty name ends the solo"),
    Address("/segue/reload", (), (), cmd.Reload,
            lambda a, _: (), "on_reload", "",
            "re-read the graph now; replies `/segue/reload ok\\|error message`",
            reply="reply_reload"),
    Address("/segue/status", (), (Arg("id", A),), cmd.Status,
            lambda a, _: (a[0] if a else None,), "on_status", "[id]",
            "replies `/segue/status` with one JSON string (below); an `id` comes back in it, "
            "to match a reply to its request over UDP", reply="reply_status"),
    Address("/segue/subscribe", (Arg("port", I),), (Arg("host", S),), cmd.Subscribe,
            _port, None, "port, [host]",
            "send notifications there (host defaults to the sender's)"),
    Address("/segue/unsubscribe", (Arg("port", I),), (Arg("host", S),), cmd.Unsubscribe,
            _port, None, "port, [host]", "stop them"),
    Address("/segue/ping", (), (Arg("id", A),), None,
            lambda a, _: (), None, "id",
            "replies `/segue/pong id daemon_time_seconds` (monotonic clock as a 64-bit double, "
            "for offsets)"),
)
# fmt: on
ADDRESSES: dict[str, Address] = {row.address: row for row in ROWS}


def to_command(
    address: str, args: list, sender: tuple[str, int], received_ns: int, due_ns: int = 0
) -> cmd.Command | None:
    """Check one message against the table and build its command (None for ping)."""
    row = ADDRESSES.get(address)
    if row is None:
        raise BadMessage("unknown_address", f"unknown address {address!r}")
    required, optional = row.required, row.optional
    if not len(required) <= len(args) <= len(required) + len(optional):
        kinds = ", ".join(arg.kind for arg in required) or "none"
        raise BadMessage(
            "bad_args", f"{address} takes {len(required)} argument(s) ({kinds}), got {len(args)}"
        )
    for i, (arg, value) in enumerate(zip(required + optional, args, strict=False)):
        if not arg.kind.accepts(value):
            raise BadMessage(
                "bad_args",
                f"{address} argument {i + 1} must be a {arg.kind}, got {type(value).__name__}",
            )
    if row.command is None:
        return None
    try:
        fields = row.build(args, sender)
    except BadMessage as exc:
        raise BadMessage(exc.counter, f"{address}: {exc}") from None
    return row.command(*fields, received_ns=received_ns, due_ns=due_ns, reply_to=sender)


def scripted() -> list[Address]:
    """The addresses a session script may use: those the Conductor applies."""
    return [row for row in ROWS if row.handler is not None]


def from_script(item: dict) -> cmd.Command:
    """The command of one session-script item (its `at` aside): the address's key names the
    first argument, later arguments go by their names: `{param: intensity, value: 0.8}`."""
    rows = [row for row in scripted() if row.key in item]
    if len(rows) != 1:
        keys = ", ".join(row.key for row in scripted())
        raise BadMessage("bad_args", f"expected exactly one of {keys}")
    row = rows[0]
    names = [arg.name for arg in row.required + row.optional]
    unknown = sorted(set(item) - {"at", row.key, *names[1:]})
    if unknown:
        raise BadMessage(
            "bad_args",
            f"unknown key {unknown[0]!r} with {row.key!r}; it takes "
            f"{', '.join(dict.fromkeys(names[1:])) or 'nothing more'}",
        )
    args = [item[row.key]] if row.required or row.optional else []
    for name in dict.fromkeys(names[1:]):
        if name in item:
            value = item[name]
            args.extend(value if name == "args" and isinstance(value, list) else [value])
    return replace(to_command(row.address, args, ("", 0), 0), reply_to=None)


def markdown() -> str:
    """The README's address table."""
    lines = ["| address | arguments | effect |", "|---|---|---|"]
    for row in ROWS:
        shown = f" {row.shown} " if row.shown else " "
        lines.append(f"| `{row.address}` |{shown}| {row.effect} |")
    return "\n".join(lines)
