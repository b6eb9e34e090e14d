"""The OSC address table drives parsing, the Conductor's dispatch, session scripts and the
README's table: adding an address is one row and its handler."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from engine.control import addresses
from engine.control import commands as cmd
from engine.control.addresses import Address, Arg, Kind
from engine.control.conductor import Conductor
from tests.control.fakes import GRAPH

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_shows_the_table() -> None:
    text = README.read_text(encoding="utf-8")
    table = addresses.markdown()
    assert table in text, (
        "the README's OSC address table differs from engine/control/addresses.py; paste:\n" + table
    )


def test_every_conductor_command_has_its_handler() -> None:
    for row in addresses.ROWS:
        if row.handler:
            assert callable(getattr(Conductor, row.handler)), row.address


@dataclass(frozen=True, slots=True)
class Nudge(cmd.Command):
    amount: float


NUDGE = Address("/segue/nudge", (Arg("amount", Kind.NUMBER),), (Arg("why", Kind.STRING),),
                Nudge, lambda a, _: (float(a[0]),), "on_nudge", "amount, [why]",
                "nudge the tempo")  # fmt: skip


class NudgedConductor(Conductor):
    def on_nudge(self, command: Nudge, _received: int) -> dict:
        return {"nudged": command.amount}


@pytest.fixture
def with_nudge(monkeypatch):
    rows = (*addresses.ROWS, NUDGE)
    monkeypatch.setattr(addresses, "ROWS", rows)
    monkeypatch.setattr(addresses, "ADDRESSES", {row.address: row for row in rows})


def test_a_new_row_is_parsed_dispatched_scripted_and_shown(with_nudge) -> None:
    sender = ("127.0.0.1", 5000)
    command = addresses.to_command("/segue/nudge", [2], sender, received_ns=7)
    assert command == Nudge(2.0, received_ns=7, reply_to=sender)
    with pytest.raises(addresses.BadMessage, match="argument 1 must be a number, got str"):
        addresses.to_command("/segue/nudge", ["fast"], sender, received_ns=7)
    with pytest.raises(addresses.BadMessage, match="takes 1 argument"):
        addresses.to_command("/segue/nudge", [], sender, received_ns=7)

    assert addresses.from_script({"at": 1.0, "nudge": 3, "why": "boss"}) == Nudge(3.0)
    with pytest.raises(addresses.BadMessage, match="unknown key 'how' with 'nudge'"):
        addresses.from_script({"at": 1.0, "nudge": 3, "how": "x"})

    assert "| `/segue/nudge` | amount, [why] | nudge the tempo |" in addresses.markdown()

    conductor = NudgedConductor(GRAPH, pool=None, mixer=None)
    assert conductor.handle(Nudge(0.5)) == {"nudged": 0.5}


@pytest.mark.parametrize(
    ("item", "command"),
    [
        ({"at": 0, "event": "hit"}, cmd.Event("hit")),
        ({"at": 0, "event": "hit", "args": [1, "a"]}, cmd.Event("hit", (1, "a"))),
        ({"at": 0, "state": "calm"}, cmd.SetState("calm")),
        ({"at": 0, "param": "intensity", "value": 1}, cmd.SetParam("intensity", 1.0)),
        ({"at": 0, "stinger": "hit"}, cmd.PlayStinger("hit")),
        ({"at": 0, "mute": "drums", "muted": 1}, cmd.MutePart("drums", True)),
        ({"at": 0, "solo": ""}, cmd.SoloPart("")),
        ({"at": 0, "reload": True}, cmd.Reload()),
    ],
)
def test_script_items_become_the_commands_osc_would_build(item, command) -> None:
    assert addresses.from_script(item) == command
