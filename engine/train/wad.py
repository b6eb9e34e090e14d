"""Standard MIDI lumps (`D_*`) read from a Doom WAD file, such as Freedoom's."""

from __future__ import annotations

import struct
from pathlib import Path

MIDI_MAGIC = b"MThd"


class WadError(ValueError):
    pass


def midi_lumps(path: str | Path) -> dict[str, bytes]:
    """Name → bytes of every music lump that is a standard MIDI file (MUS lumps are skipped)."""
    data = Path(path).read_bytes()
    if len(data) < 12 or data[:4] not in (b"IWAD", b"PWAD"):
        raise WadError(f"{path}: not a WAD file")
    lump_count, directory_offset = struct.unpack_from("<ii", data, 4)
    lumps = {}
    for i in range(lump_count):
        offset, size, raw_name = struct.unpack_from("<ii8s", data, directory_offset + 16 * i)
        name = raw_name.rstrip(b"\0").decode("ascii", "replace")
        body = data[offset : offset + size]
        if name.startswith("D_") and body[:4] == MIDI_MAGIC:
            lumps[name] = body
    return lumps
