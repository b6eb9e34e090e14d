"""General MIDI sound names, as a designer writes them in the YAML (snake_case)."""

from __future__ import annotations

from engine.score.music import Instrument

# GM Level 1 programs 0..127, in order.
PROGRAMS: tuple[str, ...] = (
    "acoustic_grand_piano", "bright_acoustic_piano", "electric_grand_piano", "honky_tonk_piano",
    "electric_piano_1", "electric_piano_2", "harpsichord", "clavinet",
    "celesta", "glockenspiel", "music_box", "vibraphone",
    "marimba", "xylophone", "tubular_bells", "dulcimer",
    "drawbar_organ", "percussive_organ", "rock_organ", "church_organ",
    "reed_organ", "accordion", "harmonica", "tango_accordion",
    "acoustic_guitar_nylon", "acoustic_guitar_steel", "electric_guitar_jazz",
    "electric_guitar_clean",
    "electric_guitar_muted", "overdriven_guitar", "distortion_guitar", "guitar_harmonics",
    "acoustic_bass", "electric_bass_finger", "electric_bass_pick", "fretless_bass",
    "slap_bass_1", "slap_bass_2", "synth_bass_1", "synth_bass_2",
    "violin", "viola", "cello", "contrabass",
    "tremolo_strings", "pizzicato_strings", "orchestral_harp", "timpani",
    "string_ensemble_1", "string_ensemble_2", "synth_strings_1", "synth_strings_2",
    "choir_aahs", "voice_oohs", "synth_choir", "orchestra_hit",
    "trumpet", "trombone", "tuba", "muted_trumpet",
    "french_horn", "brass_section", "synth_brass_1", "synth_brass_2",
    "soprano_sax", "alto_sax", "tenor_sax", "baritone_sax",
    "oboe", "english_horn", "bassoon", "clarinet",
    "piccolo", "flute", "recorder", "pan_flute",
    "blown_bottle", "shakuhachi", "whistle", "ocarina",
    "lead_square", "lead_sawtooth", "lead_calliope", "lead_chiff",
    "lead_charang", "lead_voice", "lead_fifths", "lead_bass_and_lead",
    "pad_new_age", "pad_warm", "pad_polysynth", "pad_choir",
    "pad_bowed", "pad_metallic", "pad_halo", "pad_sweep",
    "fx_rain", "fx_soundtrack", "fx_crystal", "fx_atmosphere",
    "fx_brightness", "fx_goblins", "fx_echoes", "fx_sci_fi",
    "sitar", "banjo", "shamisen", "koto",
    "kalimba", "bagpipe", "fiddle", "shanai",
    "tinkle_bell", "agogo", "steel_drums", "woodblock",
    "taiko_drum", "melodic_tom", "synth_drum", "reverse_cymbal",
    "guitar_fret_noise", "breath_noise", "seashore", "bird_tweet",
    "telephone_ring", "helicopter", "applause", "gunshot",
)  # fmt: skip

# Short names designers reach for first.
ALIASES: dict[str, str] = {
    "piano": "acoustic_grand_piano",
    "electric_piano": "electric_piano_1",
    "organ": "drawbar_organ",
    "guitar": "acoustic_guitar_nylon",
    "nylon_guitar": "acoustic_guitar_nylon",
    "steel_guitar": "acoustic_guitar_steel",
    "clean_guitar": "electric_guitar_clean",
    "electric_bass": "electric_bass_finger",
    "synth_bass": "synth_bass_1",
    "strings": "string_ensemble_1",
    "slow_strings": "string_ensemble_2",
    "synth_strings": "synth_strings_1",
    "choir": "choir_aahs",
    "brass": "brass_section",
    "horn": "french_horn",
    "harp": "orchestral_harp",
    "sax": "alto_sax",
    "square": "lead_square",
    "saw": "lead_sawtooth",
    "warm_pad": "pad_warm",
}

# GM drum kits: bank 128, these programs.
DRUM_KITS: dict[str, int] = {
    "standard": 0,
    "room": 8,
    "power": 16,
    "electronic": 24,
    "tr808": 25,
    "jazz": 32,
    "brush": 40,
    "orchestra": 48,
}


def instrument(part: str, name: str) -> Instrument:
    """The GM instrument for `name` in `part`; raises ValueError naming the choices."""
    if part == "drums":
        if name not in DRUM_KITS:
            raise ValueError(f"unknown drum kit {name!r}; expected one of {', '.join(DRUM_KITS)}")
        return Instrument(name, DRUM_KITS[name], is_drums=True)
    canonical = ALIASES.get(name, name)
    if canonical not in PROGRAMS:
        raise ValueError(
            f"unknown General MIDI instrument {name!r}; "
            f"expected a GM name such as strings, flute, acoustic_bass (see engine/score/gm.py)"
        )
    return Instrument(name, PROGRAMS.index(canonical))
