"""`segue init DIR`: a copy of the example graph, its motifs, stingers and JSON Schema, for a
designer to start from. Never overwrites a file."""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from engine.tools.shipped import GRAPH_FILE, GRAPH_FOLDER, STARTER, shipped


def register(subparsers) -> None:
    """Add `init` to the `segue` command line."""
    init = subparsers.add_parser("init", help="copy the example graph and its assets into a "
                                 "folder to start from")  # fmt: skip
    init.add_argument("dir", help="the folder (created if missing; existing files are kept)")
    init.set_defaults(func=run)


def starter_files() -> list[Path]:
    """The shipped files `init` copies, relative to the graph's folder."""
    source = shipped(GRAPH_FOLDER)
    out = []
    for name in STARTER:
        path = source / name
        found = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        out += [p.relative_to(source) for p in found if "__pycache__" not in p.parts]
    return out


def run(args: argparse.Namespace) -> int:
    source, target = shipped(GRAPH_FOLDER), Path(args.dir)
    files = starter_files()
    if target.exists() and not target.is_dir():
        print(f"segue: {target} is a file; init needs a folder", file=sys.stderr)
        return 1
    taken = [target / f for f in files if (target / f).exists()]
    if taken:
        print(f"segue: {taken[0]} already exists; init never overwrites (pick another folder "
              "or move it away)", file=sys.stderr)  # fmt: skip
        return 1
    try:
        for f in files:
            (target / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source / f, target / f)
    except OSError as exc:
        print(f"segue: cannot write into {target}: {exc.strerror}", file=sys.stderr)
        return 1
    graph = target / GRAPH_FILE
    print(f"wrote {graph} with its motifs, stingers and JSON Schema ({len(files)} files)")
    print("next:")
    print(f"  segue check {graph}          # validate it (names file:line:column)")
    print(f"  segue run --graph {graph}    # play it; edits are heard as you save")
    return 0
