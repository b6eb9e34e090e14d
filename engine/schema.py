"""`python -m engine.schema`: the older spelling of `python -m engine.tools.schema`."""

from engine.tools.schema import main

if __name__ == "__main__":
    raise SystemExit(main())
