"""Stingers: short phrases over the music, quantized to the grid, in the key of the state
they land in, each with a cooldown. One not yet rendered waits and is never dropped."""

from __future__ import annotations

from engine.audio.mixer import EQUAL_POWER
from engine.control import clock, layers, policy
from engine.control.clock import Main
from engine.control.layers import SWAP_FADE_SECONDS
from engine.control.policy import Pending
from engine.control.report import Counters
from engine.control.staging import Stage
from engine.making.pool import LoopPool
from engine.score.graph import Graph, loop_spec


class Stingers:
    def __init__(
        self, stage: Stage, pool: LoopPool, counters: Counters, block_frames: int, sample_rate: int
    ) -> None:
        self.stage = stage
        self.pool = pool
        self.counters = counters
        self.block_frames = block_frames
        self.sample_rate = sample_rate
        self.last: dict[str, int] = {}  # stinger -> the frame it last played at
        self.waiting: list[tuple[str, int]] = []  # asked for before they were rendered

    def request(self, graph: Graph, old: Graph, changed: set[str]) -> None:
        """Have every stinger rendered in the key of every state of `graph`, keeping those
        already made for an unchanged stinger and state."""
        names = set(graph.stingers)

        def keep(key: tuple) -> bool:
            if key[0] != "stinger":
                return True
            name, state = key[1], key[2]
            return (
                name in names
                and state in graph.states
                and state not in changed
                and graph.stingers[name] == old.stingers.get(name)
            )

        self.pool.forget_extras(keep)
        for stinger in graph.stingers.values():
            for state in graph.states:
                self.pool.request_extra(
                    ("stinger", stinger.name, state),
                    "make_stinger",
                    stinger,
                    loop_spec(graph, state, 0),
                    f"stinger-{stinger.name}-{state}",
                )

    def play(
        self,
        graph: Graph,
        name: str,
        *,
        current: str,
        grid: Main | None,
        pending: Pending | None,
        at_frame: int | None = None,
        state: str | None = None,
        quantize: str | None = None,
        retry: bool = False,
    ) -> dict:
        """Schedule stinger `name` on `grid` (or at `at_frame`), in the key of the state it
        lands in: `current`, or the pending change's destination if it lands after it."""
        stinger = graph.stingers[name]
        stage, counters = self.stage, self.counters
        now = stage.now
        cooldown = round(stinger.cooldown_seconds * self.sample_rate)
        if not retry and policy.cooling_down(self.last.get(name), now, cooldown):
            counters.stingers_cooldown += 1
            stage.record("stinger_cooldown", {"stinger": name})
            stage.notify("/segue/stinger", name, "cooldown")
            return {"ignored": f"stinger {name!r} is cooling down"}
        quantize = quantize or stinger.quantize
        state = state or current
        moved = False
        if at_frame is None:
            if quantize != "none":
                earliest = now + 2 * self.block_frames
                at_frame = clock.grid_point(quantize, earliest, grid, self.sample_rate)
            if pending is not None and at_frame is not None and at_frame >= pending.switch:
                # It would land after the change: play it in the next state, on its grid.
                counters.stingers_moved_to_next_state += 1
                moved = True
                state = pending.rule.target
                lands_in = graph.states[state]
                bar = lands_in.meter.beats_per_bar if quantize == "bar" else 1
                step = clock.beat_frames(lands_in, self.sample_rate) * bar
                at_frame = clock.on_grid_after(pending.switch, at_frame, step)
            elif pending is None and grid is not None:
                state = grid.state.name
        clip = self.pool.extra(("stinger", name, state))
        if clip is None:
            # Not rendered yet (a fresh graph): play it as soon as it is, never drop it.
            counters.stingers_waited += 1
            self.waiting.append((name, now))
            return {"queued": f"stinger {name!r} is being rendered"}
        serial = stage.next_serial()
        base, offset = (serial, 0) if at_frame is None else (0, at_frame)
        gain = 10.0 ** (stinger.gain_db / 20.0)
        edge = round(SWAP_FADE_SECONDS * self.sample_rate)
        stop = offset + clip.frames - edge
        layer = layers.one_shot(
            clip, base, offset, stop, edge, edge, gain, EQUAL_POWER, f"stinger:{name}"
        )
        stage.publish(serial, [*stage.layers, layer])
        self.last[name] = now
        counters.stingers += 1
        data = {"stinger": name, "state": state, "tonic": graph.states[state].tonic,
                "frames": clip.frames, "moved": moved}  # fmt: skip
        stage.record("stinger", data, serial=base, offset=offset)
        stage.notify("/segue/stinger", name, "scheduled")
        return {"scheduled": name, "frame": None if base else offset}

    def take_waiting(self) -> list[str]:
        """The stingers still waiting for their audio, to be asked for again."""
        waiting, self.waiting = self.waiting, []
        return [name for name, _ in waiting]
