"""The shipped decoding as a teacher: loops it writes, as one more training source.

The priors (engine.making.priors) keep a loop in its key, every requested part playing, the
pad on the chord and the rhythm on its pulse; the network alone does less of each. Trained on
what the model *with* its priors writes, beside the real music, the network learns those
habits itself: the model alone comes nearer the shipped decoding (distillation). The loops are
read like any MIDI: their controls (key as heard, density, parts, mood) are computed from
their notes, never copied from the request.

The specs are drawn as a designer might write them (`evaluate.random_specs`, with a seed of
their own), never the listening specs, held out or tuning. The teacher is the model shipped
when the data is built, unless `data --teacher MODEL` names another; data/dataset.json
records its SHA-256, and the card prints it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from engine.score.units import quarters_per_bar
from engine.train.sources import TEACHER_SOURCE

LOOPS = 6000  # `data --teacher-loops`: 4 bars each, one window each (a minute and a half)
SEED = 4242  # evaluate.py draws its specs from seeds 99, 777 and 2026

ABOUT = {
    "what": "loops written by Segue's shipped decoding (a teacher model with the shipped "
    "priors, engine/train/teacher.py) for random state specs, never the listening specs; the "
    "teacher's SHA-256 is in data/dataset.json",
    "licence": "Segue's own output (MIT)",
}


@dataclass(frozen=True)
class Teacher:
    """What `engine.train.data.build` asks of a source of taught loops."""

    model: Path | None = None  # None: the shipped model
    loops: int = LOOPS
    seed: int = SEED
    about = ABOUT  # the source is always TEACHER_SOURCE: SOURCE_SHARE and evaluate name it

    def sha256(self) -> str:
        from engine.making.model_files import default_model_path

        path = Path(self.model) if self.model is not None else default_model_path()
        return hashlib.sha256(path.read_bytes()).hexdigest()

    def pieces(self) -> Iterator:
        """One Piece per loop, as engine.train.data reads music (bars from the loop's meter)."""
        from engine.making.model import ModelGenerator, Sampling
        from engine.making.model_files import ModelError
        from engine.train.data import Piece
        from engine.train.evaluate import random_specs

        generator = ModelGenerator.load(self.model, sampling=Sampling())
        specs = random_specs(self.loops, self.seed)
        for i, spec in enumerate(tqdm(specs, desc="teacher loops", unit="loop")):
            try:
                loop = generator.generate(spec)
            except ModelError as error:  # the daemon would play the rules: not a teacher's loop
                tqdm.write(f"teacher loop {i} skipped: {error}")
                continue
            bar, meter = quarters_per_bar(spec.meter), str(spec.meter)
            bars = [(k * bar, meter) for k in range(spec.bars)]
            piece_id = f"{TEACHER_SOURCE}/{i}"
            yield Piece(piece_id, TEACHER_SOURCE, list(loop.notes), bars, spec.tempo_bpm)
