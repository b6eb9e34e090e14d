"""`python -m engine.train {data,train,export,evaluate,all}`: Segue's model, end to end.

python -m engine.train data [--midi DIR ...]   # rebuild the cached dataset under data/
python -m engine.train all  [--minutes 35]     # train, export, quantize, evaluate → models/
python -m engine.train listen [--loops 20]      # the loops as a listener hears them → models/
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from engine.train.teacher import LOOPS as TEACHER_LOOPS
from engine.train.teacher import Teacher


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m engine.train", description=__doc__.split("\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    data = sub.add_parser("data", help="read the sources and cache the tokenized dataset")
    data.add_argument("--midi", type=Path, action="append", default=[], help="extra MIDI folder")
    data.add_argument("--workers", type=int, default=2)
    data.add_argument("--teacher-loops", type=int, default=TEACHER_LOOPS,
                      help="loops of the shipped decoding to learn from (0: none)")  # fmt: skip
    data.add_argument("--teacher", type=Path, default=None,
                      help="the model whose decoding writes them (default: shipped)")  # fmt: skip
    for name in ("train", "all"):
        p = sub.add_parser(name, help="train" if name == "train" else "train+export+evaluate")
        p.add_argument("--minutes", type=float, default=35.0, help="wall-clock training budget")
        p.add_argument("--hidden", type=int, default=256)
        p.add_argument("--layers", type=int, default=2)
        p.add_argument("--dropout", type=float, default=None, help="dropout (0.1)")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--run", type=Path, default=Path("runs/gru"), help="checkpoint folder")
        p.add_argument("--threads", type=int, default=1, help="torch threads (2 at most)")
        p.add_argument("--max-len", type=int, default=512, help="tokens a window is cropped to")
        p.add_argument("--init", type=Path, default=None, help="checkpoint to fine-tune from")
        p.add_argument("--home-weight", type=float, default=None,
                       help="draws of a window that opens on the tonic chord, against one "
                            "that does not (1)")  # fmt: skip
        p.add_argument("--parts-weight", type=float, default=None,
                       help="draws of a window per part it plays beyond one, within its "
                            "source (1)")  # fmt: skip
        p.add_argument(
            "--max-steps",
            type=int,
            default=0,
            help="stop after this many steps (0: the time budget alone decides)",
        )
        p.add_argument("--patience", type=int, default=None,
                       help="evaluations without improvement before stopping (5)")  # fmt: skip
        p.add_argument("--lr", type=float, default=None,
                       help="learning rate (default 2e-3; 5e-4 with --init)")  # fmt: skip
    exp = sub.add_parser("export", help="export the best checkpoint to ONNX and quantize it")
    exp.add_argument("--run", type=Path, default=Path("runs/gru"))
    ev = sub.add_parser("evaluate", help="evaluate the shipped model, write models/EVALUATION.md")
    ev.add_argument("--model", type=Path, default=None)
    ev.add_argument("--loops", type=int, default=20, help="generated loops per control value")
    sw = sub.add_parser("sweep", help="control accuracy per prior setting (tuning specs)")
    sw.add_argument("--model", type=Path, default=None)
    sw.add_argument("--loops", type=int, default=96)
    li = sub.add_parser("listen", help="loops as a listener hears them, beside real game music")
    li.add_argument("--model", type=Path, default=None)
    li.add_argument("--loops", type=int, default=20, help="loops per state spec and maker")
    li.add_argument("--out", type=Path, default=Path("models"))
    li.add_argument("--tuning", action="store_true", help="the tuning specs instead (printed)")
    args = parser.parse_args(argv)

    if args.command == "data":
        from engine.train.data import build

        summary = build(
            args.midi,
            workers=args.workers,
            teacher=Teacher(args.teacher, args.teacher_loops) if args.teacher_loops else None,
        )
        for name, source in summary["sources"].items():
            print(f"{name:16s} {source['pieces']:6d} pieces {source['windows']:7d} windows")
        print("splits:", summary["splits"])
        return 0
    if args.command == "listen":
        from engine.train.listening_report import main as listen

        return listen(args.model, args.loops, args.out, args.tuning)
    if args.command == "sweep":
        from engine.train.evaluate import sweep

        sweep(args.model, loops=args.loops)
        return 0
    if args.command in ("train", "all"):
        from engine.train.train import FINE_TUNE_LR, TrainConfig, train

        config = TrainConfig(
            hidden=args.hidden,
            layers=args.layers,
            dropout=args.dropout if args.dropout is not None else TrainConfig.dropout,
            seed=args.seed,
            minutes=args.minutes,
            max_steps=args.max_steps,
            threads=args.threads,
            max_len=args.max_len,
            init=args.init,
            patience=args.patience if args.patience is not None else TrainConfig.patience,
            home_weight=args.home_weight
            if args.home_weight is not None
            else TrainConfig.home_weight,
            parts_weight=args.parts_weight
            if args.parts_weight is not None
            else TrainConfig.parts_weight,
            lr=args.lr if args.lr is not None else FINE_TUNE_LR if args.init else TrainConfig.lr,
        )
        train(config, args.run, command=" ".join(["python -m engine.train", *sys.argv[1:]]))
        if args.command == "train":
            return 0
    if args.command in ("export", "all"):
        from engine.train.export import export

        export(args.run, command=" ".join(["python -m engine.train", *sys.argv[1:]]))
        if args.command == "export":
            return 0
    from engine.train.evaluate import evaluate

    evaluate(getattr(args, "model", None), loops_per_value=getattr(args, "loops", 20))
    return 0


def run(argv: list[str] | None = None) -> int:
    """main(), with a missing input (the dataset, a run, a model) said in one line."""
    from engine.making.model_files import ModelError

    try:
        return main(argv)
    except (FileNotFoundError, ModelError) as error:
        print(f"python -m engine.train: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(run())
