"""What is heard of each part: the state's layer curves at the parameters, times mute and
solo from the live view. A change is followed at the next tick, smoothly, as one new plan."""

from __future__ import annotations

from engine.control import commands as cmd
from engine.control import layers
from engine.control.clock import Main
from engine.control.layers import MUTE_FADE_SECONDS
from engine.control.staging import Stage
from engine.score.graph import State
from engine.score.music import PARTS, Clip


class Parts:
    def __init__(self) -> None:
        self.muted: set[str] = set()
        self.solo = ""  # a part heard alone ("" none)
        self.mixing = False  # once a part was muted, loops play as stems (gains apply)
        self.moved = 0.0  # smoothing seconds of what changed since the last tick

    def mute(self, command: cmd.MutePart | cmd.SoloPart) -> dict | None:
        """Mute or solo a part; the stems follow at the next tick."""
        if (command.part or isinstance(command, cmd.MutePart)) and command.part not in PARTS:
            return {"error": f"unknown part {command.part!r}; parts are {', '.join(PARTS)}"}
        if isinstance(command, cmd.SoloPart):
            self.solo = command.part
        elif command.muted:
            self.muted.add(command.part)
        else:
            self.muted.discard(command.part)
        self.mixing = True
        self.moved = max(self.moved, MUTE_FADE_SECONDS)
        return None

    def moving(self, smoothing_seconds: float) -> None:
        """A parameter changed: its stems follow over `smoothing_seconds`."""
        self.moved = max(self.moved, smoothing_seconds)

    def targets(self, state: State, clip: Clip, params: dict[str, float]):
        """Stem gains for `clip` in `state` (None: the mix plays, all at unit gain)."""
        return layers.stem_targets(state, clip.parts, params, self.muted, self.solo, self.mixing)

    def follow(
        self, stage: Stage, main: Main | None, params: dict[str, float], sample_rate: int
    ) -> None:
        """Move the main loop's stems toward their new gains, smoothly, from the next block."""
        smoothing, self.moved = self.moved, 0.0
        if not smoothing or main is None or not (main.state.layers or self.mixing):
            return
        target = self.targets(main.state, main.clip, params)
        serial = stage.next_serial()
        current = layers.stems_now(main.layer, stage.start_frame, stage.now)
        frames = max(1, round(smoothing * sample_rate))
        new = layers.follow(main.layer, current, target, serial, frames)
        stage.replace(main.layer, new)
        main.layer = new
        stage.publish(serial, stage.layers)
