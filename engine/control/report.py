"""What the Conductor reports: its counters, and the status a game or the live view asks for."""

from __future__ import annotations

from dataclasses import dataclass

from engine.control import clock


@dataclass
class Counters:
    commands: int = 0
    events: int = 0
    unknown_events: int = 0
    unknown_states: int = 0
    unknown_params: int = 0
    unknown_stingers: int = 0
    transitions: int = 0
    replaced_while_pending: int = 0
    queued_while_pending: int = 0
    ignored_while_pending: int = 0
    loops_played: int = 0
    loop_repeats_no_fresh: int = 0
    reloads: int = 0
    reload_errors: int = 0
    waited_for_loop: int = 0
    stingers: int = 0
    stingers_cooldown: int = 0
    stingers_moved_to_next_state: int = 0
    stingers_waited: int = 0
    bridges: int = 0
    bridges_missed: int = 0
    beats: int = 0
    bars: int = 0


def status(conductor) -> dict:
    """The Conductor's state for `/segue/status`: state, tempo, bar and beat, the pending
    change, pools, parameters and counters."""
    c = conductor
    now = c.mixer.frames_rendered
    graph = c.graph
    grid = {
        "tempo": graph.states[c.state].tempo_bpm if c.state in graph.states else None,
        "bar": None,
        "beat": None,
        "next_beat_ms": None,
        "next_bar_ms": None,
    }
    pos = clock.position(c.clock, now, c.sample_rate)
    if pos is not None:
        grid = clock.bar_and_beat(*pos, c.sample_rate)
    main, pending = c.main, c.pending
    return {
        "state": c.state,
        **grid,
        "bar_count": c.stage.bar_number,
        "grid_anchor_frame": None if c.clock is None else c.clock.anchor,
        "frame": now,
        "loop": main.clip.loop.loop_id if main else None,
        "generator": main.clip.loop.generator if main else None,
        "pending": None
        if pending is None
        else {
            "to": pending.rule.target,
            "exit": pending.rule.exit,
            "in_ms": round((pending.switch - now) / c.sample_rate * 1000, 2),
        },
        "pools": c.pool.sizes(),
        "params": dict(c.params),
        "counters": vars(c.counters) | {"mixer_" + k: v for k, v in vars(c.mixer.counters).items()},
        "last_error": c.last_error,
        "muted": sorted(c.parts.muted),
        "solo": c.parts.solo,
        "graph": graph.path,
    }
