"""The staging object against a fake mixer: serials, plans, frames, outbox, responses."""

from __future__ import annotations

from dataclasses import dataclass, field

from engine.control.staging import Response, Stage
from engine.control.timeline import Timeline
from tests.control.fakes import RATE


@dataclass
class FakeMixer:
    frames_rendered: int = 0
    started: dict = field(default_factory=dict)  # serial -> frame
    seen: dict = field(default_factory=dict)  # serial -> ns
    plans: list = field(default_factory=list)

    def start_frame(self, serial: int) -> int | None:
        return self.started.get(serial)

    def seen_ns(self, serial: int) -> int | None:
        return self.seen.get(serial)

    def publish(self, plan) -> None:
        self.plans.append(plan)


def test_serials_plans_and_absolute_frames() -> None:
    mixer = FakeMixer(frames_rendered=1_024)
    stage = Stage(mixer, Timeline(RATE), RATE)
    assert [stage.next_serial(), stage.next_serial()] == [1, 2]
    stage.publish(2, ["a", "b"])
    plan = mixer.plans[-1]
    assert (plan.serial, plan.layers, stage.layers) == (2, ("a", "b"), ["a", "b"])
    stage.replace("a", "c")
    assert stage.layers == ["c", "b"]
    assert stage.absolute(2, 10) == 1_034  # unstarted: from the next block
    mixer.started[2] = 900
    assert stage.absolute(2, 10) == 910


def test_records_resolve_once_their_plan_starts() -> None:
    mixer = FakeMixer(frames_rendered=100, started={0: 0})
    stage = Stage(mixer, Timeline(RATE), RATE)
    now = stage.record("event", {"event": "x"})
    absolute = stage.record("loop", {}, serial=0, offset=48_000)
    later = stage.record("transition", {}, serial=3, offset=7)
    assert (now.frame, absolute.frame, later.frame) == (100, 48_000, None)
    mixer.started[3] = 256
    stage.resolve()
    assert later.frame == 263


def test_outbox_and_responses() -> None:
    mixer = FakeMixer(frames_rendered=512)
    stage = Stage(mixer, Timeline(RATE), RATE)
    stage.notify("/segue/beat", 1, 2)
    stage.notify("/segue/bar", 3, at=1_000)
    assert list(stage.outbox) == [("/segue/beat", (1, 2), 512), ("/segue/bar", (3,), 1_000)]
    response = Response("hit", 0, 1_000, serial=4, offset=0, audible_offset=48)
    stage.respond(response)
    stage.resolve()
    assert list(stage.responses) == []  # not played yet
    mixer.started[4], mixer.seen[4] = 768, 2_000_000
    stage.resolve()
    assert list(stage.responses) == [response]
    assert (response.begins_frame, response.audible_ns) == (768, 2_000_000 + 1_000_000)
