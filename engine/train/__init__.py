"""Training, export and evaluation of Segue's music model (needs the `train` extra).

Nothing under engine/train is imported by the daemon: torch and music21 stay out of it.
Entry point: `python -m engine.train {data,train,export,evaluate,all}`.
"""
