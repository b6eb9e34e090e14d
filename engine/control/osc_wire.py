"""OSC 1.0 messages on the wire: the strict length check, a fast parser for the common
case (a plain message with i, f, d, h, s, T, F, N arguments), and a fast encoder for
messages of strings only (status, errors, reload answers).

The fast parser exists for floods: python-osc's general parser costs ~30 µs a message in
Python, this one a few (and python-osc builds a string byte by byte: 0.38 ms for a 3.4 KB
status reply, `encode_strings` 2 µs, the same bytes); anything the parser does not know
(bundles, blobs, other tags) goes to python-osc. Both parsers refuse what the spec says is
malformed: a message shorter or longer than its type tags promise (python-osc would zero-pad
a truncated argument), and a type tag that neither reads.
"""

from __future__ import annotations

import struct

_UNPACK = {"i": struct.Struct(">i"), "f": struct.Struct(">f"), "d": struct.Struct(">d"),
           "h": struct.Struct(">q")}  # fmt: skip
_CONSTANTS = {"T": True, "F": False, "N": None}
# The tags python-osc reads; it skips any other with a warning of its own on the root logger
# (a flood of such datagrams would be a flood of log lines): they are malformed here.
_KNOWN_TAGS = frozenset("ifdhsbrmtTFN[]")


def parse_message(data: bytes) -> tuple[str, list] | None:
    """(address, arguments) of a plain message, None if it needs python-osc; ValueError
    (or a subclass) when it is malformed."""
    end = data.index(b"\0")
    address = data[:end].decode("ascii")
    index = (end // 4 + 1) * 4
    if index >= len(data):
        if index > len(data):
            raise ValueError("truncated address")
        return address, []
    if data[index] != 0x2C:  # ','
        raise ValueError("no type tags")
    tags_end = data.index(b"\0", index)
    tags = data[index + 1 : tags_end].decode("ascii")
    index = (tags_end // 4 + 1) * 4
    args: list = []
    for tag in tags:
        unpack = _UNPACK.get(tag)
        if unpack is not None:
            if index + unpack.size > len(data):
                raise ValueError("truncated argument")
            args.append(unpack.unpack_from(data, index)[0])
            index += unpack.size
        elif tag == "s":
            stop = data.index(b"\0", index)
            args.append(data[index:stop].decode("utf-8"))
            index = (stop // 4 + 1) * 4
        elif tag in _CONSTANTS:
            args.append(_CONSTANTS[tag])
        elif tag in _KNOWN_TAGS:
            return None
        else:
            raise ValueError(f"unknown type tag {tag!r}")
    if index != len(data):
        raise ValueError("truncated message or trailing bytes")
    return address, args


def _padded_string_end(data: bytes, start: int) -> int:
    end = data.index(b"\0", start)  # ValueError when there is no terminator
    return (end // 4 + 1) * 4


_FIXED = {"i": 4, "f": 4, "c": 4, "r": 4, "m": 4, "d": 8, "h": 8, "t": 8}


def message_length(data: bytes) -> int:
    """How long an OSC message must be, by the spec, given its type tags (-1 if it cannot
    say). Used to refuse messages that python-osc would quietly zero-pad."""
    try:
        index = _padded_string_end(data, 0)
        if data[index : index + 1] != b",":
            return index if index == len(data) else -1  # no type tags: no arguments
        tags_end = data.index(b"\0", index)
        tags = data[index + 1 : tags_end].decode("ascii")
        index = _padded_string_end(data, index)
        for tag in tags:
            if tag in _FIXED:
                index += _FIXED[tag]
            elif tag in "sS":
                index = _padded_string_end(data, index)
            elif tag == "b":
                size = int.from_bytes(data[index : index + 4], "big")
                index += 4 + (size + 3) // 4 * 4
            elif tag not in "TFNI[]":
                return -1
        return index
    except (ValueError, UnicodeDecodeError):
        return -1


def _padded(text: str) -> bytes:
    """An OSC string: UTF-8, NUL-terminated, padded with NULs to a multiple of 4 bytes."""
    data = text.encode()
    return data + b"\0" * (4 - len(data) % 4)


def encode_strings(address: str, *args: str) -> bytes:
    """A message whose arguments are all strings, as python-osc would build it."""
    return _padded(address) + _padded("," + "s" * len(args)) + b"".join(map(_padded, args))
