"""`python -m engine.cli`: the older spelling of `python -m engine` (engine/tools/cli.py)."""

from engine.tools.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
