"""Where Segue's training music comes from: each source with what it is and its licence,
which of music21's corpus folders are read, and each source's share of the training draws."""

from __future__ import annotations

import numpy as np

SOURCES = {
    "bach_chorales": {
        "what": "J. S. Bach chorales (4-part), music21 corpus bach/*.mxl|*.xml",
        "licence": "compositions in the public domain; encodings distributed with music21 "
        "(BSD-3-Clause; music21/corpus/license.txt: licensed for use)",
    },
    "ryans_mammoth": {
        "what": "Ryan's Mammoth Collection (1883) fiddle tunes, music21 corpus ryansMammoth/",
        "licence": "tunes in the public domain (published 1883); ABC transcriptions "
        "contributed for free use, distributed with music21 (BSD-3-Clause corpus)",
    },
    "oneills_1850": {
        "what": "O'Neill's Music of Ireland (1903), 1850 tunes, music21 corpus oneills1850/",
        "licence": "tunes in the public domain (published 1903); ABC by Norbert Paap, "
        "distributed with music21 (BSD-3-Clause corpus)",
    },
    "freedoom": {
        "what": "Freedoom 1 and 2 level music: MIDI lumps D_* of freedoom{1,2}.wad",
        "licence": "BSD-3-Clause (Freedoom licence, Debian package freedoom)",
    },
    "classical_chamber": {
        "what": "multi-part works of music21's corpus: string quartets of Haydn, Mozart and "
        "Beethoven, Mozart's K. 545, Corelli, C. P. E. Bach, Handel, R. Schumann, Chopin, "
        "Weber, Verdi, Joplin, Lusitano, J. R. Johnson, Liliuokalani (.mxl, .xml, .krn)",
        "licence": "compositions in the public domain; encodings distributed with music21 "
        "(BSD-3-Clause corpus; music21/corpus/license.txt: licensed for use), none with "
        "rights of its own reserved, except Corelli's Sonata da chiesa op. 3 no. 1, encoded by "
        "Michael Scott Cuthbert, CC-BY (2014)",
    },
}
# music21 corpus folders read as "classical_chamber"; the others are left out, and LEFT_OUT
# (printed in the model card) says why.
CHAMBER_FOLDERS = (
    "beethoven", "mozart", "haydn", "corelli", "cpebach", "handel", "schumann_robert",
    "chopin", "weber", "verdi", "joplin", "lusitano", "johnson_j_r", "liliuokalani",
)  # fmt: skip
SCORE_SUFFIXES = (".mxl", ".xml", ".musicxml", ".krn")
LEFT_OUT = (
    "Not used, for the rights their encodings reserve: music21's Palestrina (John Miller "
    "2000, derivative formats reserved), Monteverdi (Ut Orpheus 2003), trecento, Schubert, "
    "Clara Schumann, Beach, Luca and Ciconia (CC-BY-SA) and Essen folksongs (non-commercial); "
    "nor its 20th-century works (Schoenberg, Webern), demos, lead sheets, exercises and "
    "roman-numeral analyses."
)

# Game music in Debian's archive that the shipped model is not trained on, and why (the card).
NOT_TRAINED_ON = (
    "Not trained on, though Debian's archive has them: Planet Blupi's music "
    "(planetblupi-music-midi, GPL-3+) and OpenTTD's OpenMSX set (openttd-openmsx, GPL-2), "
    "multi-part game music with drums of the kind only Freedoom supplies here. Segue and its "
    "model are MIT-licensed, and whether weights learnt from GPL music carry the GPL is "
    "unsettled, so the shipped model stays on sources that allow it. A studio may fine-tune "
    "on them for its own build, under their licences (`data --midi DIR`, then `all --init`)."
)


def corpus_files() -> list[tuple[str, str, str]]:
    """(path, source, name) of the music21 corpus files Segue trains on; `name` is unique in
    its source and makes the piece's id, hence its split: the file name, or for the chamber
    works, whose files are named movement1.mxl in many folders, the path under the corpus."""
    from music21 import corpus

    files = []
    for path in corpus.getPaths():
        text = str(path)
        if "/bach/" in text and path.suffix in (".mxl", ".xml"):
            files.append((text, "bach_chorales", path.name))
        elif "/ryansMammoth/" in text:
            files.append((text, "ryans_mammoth", path.name))
        elif "/oneills1850/" in text:
            files.append((text, "oneills_1850", path.name))
        elif any(f"/corpus/{folder}/" in text for folder in CHAMBER_FOLDERS):
            if path.suffix in SCORE_SUFFIXES:
                files.append((text, "classical_chamber", text.rsplit("/corpus/", 1)[1]))
    return sorted(files)


# Each source's share of the training draws, whatever its size: single-line fiddle tunes are
# three windows in five, and would otherwise teach that a four-part request yields one
# line. Freedoom is the only source with drums. A source not named here (a studio's own MIDI
# folder) gets DEFAULT_SHARE.
TEACHER_SOURCE = "segue_decoding"  # loops of the shipped decoding (engine/train/teacher.py)
SOURCE_SHARE = {
    "freedoom": 0.3,
    "classical_chamber": 0.25,
    "bach_chorales": 0.2,
    "ryans_mammoth": 0.125,
    "oneills_1850": 0.125,
    # Loops of the shipped decoding (engine/train/teacher.py): two draws in three, so that the
    # network learns what the priors add (parts that keep playing, the key, the pad's chords).
    # At one in two (1.0), 1 200 steps from the bass-keyed run lifted the model alone (tuning
    # specs, 160 loops): key as heard 64.4 -> 71.9 %, mode 74.4 -> 85.6 %, the pad's chords
    # 47.3 -> 69.8 %, polyphony 2.70 -> 3.46, pitch-class entropy 2.06 -> 2.44 bits.
    TEACHER_SOURCE: 2.0,
}
DEFAULT_SHARE = 0.25


# A game loop starts at home: within its source, a window whose first bar sounds the tonic
# chord can be drawn this many times as often as one that opens away from it (on IV, V, ...;
# `train --home-weight`). Off by default: fine-tuning the shipped model for 900 steps at 3.0
# moved the model alone's key as heard 55.5 -> 59.1 % (tuning specs, 640 loops) but the
# shipped decoding's 94.1 -> 91.4 %, and validation NLL 1.004 -> 1.016 (weighted alike).
HOME_WEIGHT = 1.0

# A window that plays more parts is drawn more within its source: `parts_weight` to the power
# of (its parts - 1) (`train --parts-weight`). Four-part windows with drums are 575 of the
# 18 107 training windows, all from Freedoom, where they are a third of the windows; a model
# that has seen few of them lets a requested part fall silent. 1 = off: at 2 (four-part
# windows 10.5 -> 16.7 % of the draws; bass-keyed windows, dropout 0.2, 2026-12-03, early
# stopped at step 4 600, validation 1.0272) all four requested parts played in 39.7 % of the
# model alone's loops (17.5 % at 1, the shipped model 47.6 %), but its key as heard fell
# (tuning specs 63.6 -> 53.4 %, held-out 70.4 -> 57.1 %): not shipped.
PARTS_WEIGHT = 1.0


def draw_weights(
    sources: np.ndarray,
    home: np.ndarray | None = None,
    home_weight: float = HOME_WEIGHT,
    parts: np.ndarray | None = None,
    parts_weight: float = PARTS_WEIGHT,
) -> np.ndarray:
    """Per window: its source's share over the source's window count (sums to 1), shared out
    within the source so that a window opening on the tonic chord (`home`) weighs
    `home_weight` times one that does not, and a window of n `parts` `parts_weight`^(n-1)
    times a window of one. Each source's share is unchanged."""
    names, index = np.unique(sources, return_inverse=True)
    shares = np.array([SOURCE_SHARE.get(str(name), DEFAULT_SHARE) for name in names])
    raw = np.ones(len(sources)) if home is None else np.where(home, home_weight, 1.0)
    if parts is not None:
        raw = raw * parts_weight ** (np.maximum(np.asarray(parts), 1) - 1)
    totals = np.bincount(index, weights=raw, minlength=len(names))
    weights = raw * (shares / totals)[index]
    return weights / weights.sum()
