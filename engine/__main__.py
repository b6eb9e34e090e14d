"""`python -m engine ...` is the `segue` command."""

if __name__ == "__main__":
    from engine.tools.cli import main

    raise SystemExit(main())
