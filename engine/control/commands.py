"""What the game can ask for: typed commands, validated once at the OSC boundary."""

from __future__ import annotations

from dataclasses import dataclass, field

Address = tuple[str, int]  # (host, port) to reply to


@dataclass(frozen=True, slots=True)
class Command:
    received_ns: int = field(default=0, kw_only=True)  # time.monotonic_ns() at receipt
    due_ns: int = field(default=0, kw_only=True)  # for future-dated OSC bundles; 0 = now
    reply_to: Address | None = field(default=None, kw_only=True)


@dataclass(frozen=True, slots=True)
class Event(Command):
    name: str
    args: tuple = ()


@dataclass(frozen=True, slots=True)
class SetState(Command):
    name: str


@dataclass(frozen=True, slots=True)
class SetParam(Command):
    name: str
    value: float


@dataclass(frozen=True, slots=True)
class Reload(Command):
    pass


@dataclass(frozen=True, slots=True)
class Status(Command):
    request_id: object = None  # echoed as "id" in the reply: match replies to requests


@dataclass(frozen=True, slots=True)
class Subscribe(Command):
    host: str
    port: int


@dataclass(frozen=True, slots=True)
class Unsubscribe(Command):
    host: str
    port: int


@dataclass(frozen=True, slots=True)
class PlayStinger(Command):
    name: str


@dataclass(frozen=True, slots=True)
class MutePart(Command):
    part: str
    muted: bool


@dataclass(frozen=True, slots=True)
class SoloPart(Command):
    part: str  # "" ends the solo
