"""The loop pool and the way clips cross from the worker process."""

from __future__ import annotations

import numpy as np
import pytest

from engine.making.pool import LoopPool
from engine.making.worker import _CLIP_PREFIX, _SHM_DIR, _land, _ship, remove_stale_clips
from engine.making.workshop import InlineMaker, Workshop, loop_seed
from engine.score.graph import loop_spec
from engine.score.load import load_graph
from engine.score.music import Clip
from tests.conftest import GAME


def test_shipped_clip_lands_identical_mapped_and_leaves_no_file(workshop):
    clip = workshop.make(loop_spec(load_graph(GAME), "explore", 3), "explore-0").clip
    shipped = _ship(clip)
    landed = _land(shipped)
    assert isinstance(landed, Clip)
    np.testing.assert_array_equal(landed.stems, clip.stems)
    np.testing.assert_array_equal(landed.mix, clip.mix)
    assert not landed.mix.flags.writeable  # the audio thread only reads
    assert not (_SHM_DIR / shipped.path).exists()  # unlinked once mapped


def test_stale_clip_files_of_dead_daemons_are_removed(tmp_path):
    stale = _SHM_DIR / f"{_CLIP_PREFIX}999999999-dead"
    stale.write_bytes(b"\0" * 16)
    assert remove_stale_clips() >= 1
    assert not stale.exists()


def test_pool_fills_every_state_and_seeds_are_stable(workshop):
    graph = load_graph(GAME)
    pool = LoopPool(InlineMaker(workshop), depth=2, seed=9)
    pool.set_graph(graph, first="combat")
    pool.poll()
    assert pool.sizes() == {name: 2 for name in graph.states}
    clip = pool.take("combat")
    assert clip.loop.loop_id == "combat-0"
    assert clip.loop.spec.seed == loop_seed(9, "combat", 0)
    pool.poll()
    assert pool.sizes()["combat"] == 2  # refilled at once (inline)


def test_a_changed_state_is_flushed_on_a_new_graph(workshop, tmp_path):
    graph = load_graph(GAME)
    pool = LoopPool(InlineMaker(workshop), depth=1, seed=1)
    pool.set_graph(graph)
    pool.poll()
    old = pool.ready["idle"][0]
    text = GAME.read_text().replace("tempo: 84", "tempo: 90", 1)
    (tmp_path / "game.yaml").write_text(text)
    for folder in ("motifs", "stingers"):
        (tmp_path / folder).mkdir()
        for f in (GAME.parent / folder).iterdir():
            (tmp_path / folder / f.name).write_bytes(f.read_bytes())
    changed = pool.set_graph(load_graph(tmp_path / "game.yaml"))
    assert changed == {"idle"}
    pool.poll()
    assert pool.ready["idle"][0] is not old and pool.ready["idle"][0].loop.spec.tempo_bpm == 90
    assert pool.ready["combat"]  # untouched states keep their loops


@pytest.mark.parametrize("state", ["idle", "combat"])
def test_loop_seed_is_the_documented_derivation(state):
    import zlib

    assert loop_seed(4, state, 2) == zlib.crc32(f"4:{state}:2".encode())


def test_a_warm_started_workshop_has_the_initial_states_sounds_loaded():
    # The worker decodes the first state's samples while its model loads, so the first loop
    # renders without decoding them; a graph it cannot read only loses the head start.
    from engine.making.soundfont import find_soundfont

    graph = load_graph(GAME)
    wanted = {(128 if i.is_drums else 0, i.program)
              for _, i in loop_spec(graph, graph.initial, 0).instruments}  # fmt: skip
    warm = Workshop(find_soundfont(None), use_model=False, warm_graph=GAME)
    assert wanted <= warm.synth._pinned
    cold = Workshop(find_soundfont(None), use_model=False, warm_graph=GAME.parent / "missing.yaml")
    assert not cold.synth._pinned
