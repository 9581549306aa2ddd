"""The `digits` command, `main(argv) -> int`: each subcommand's `<name>_args` declares its
arguments, `cmd_<name>` runs it. TensorFlow loads only in commands that train, so `--help`
answers at once; a user's mistake is one line on stderr and exit status 2, no traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import shlex
import socket
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from search import options
from search import space as space_mod
from search.board import PORT
from search.data import DataError
from search.distribute import CONNECT_TIMEOUT, WORKER_TIMEOUT
from search.options import (
    SearchOptions,
    at_least,
    count_type,
    duration,
    file_to_write,
    folder_path,
    share,
)
from search.quiet import quiet_tensorflow
from search.space import SpaceError
from search.study import DEFAULT_ROOT, Study, StudyError, write_atomic

USER_ERRORS = (SpaceError, DataError, StudyError)
DEFAULTS = {f.name: f.default for f in dataclasses.fields(SearchOptions)}
Handler = Callable[[argparse.Namespace, Console], int]


@contextlib.contextmanager
def writing(path: Path) -> Iterator[None]:
    """What stops a write to a path the user chose (permissions, a full disk), in one line."""
    try:
        yield
    except OSError as e:
        raise StudyError(f"{path}: cannot write there ({e.strerror or e})") from None


def _study(args: argparse.Namespace) -> Study:
    """The study named, read now: a missing or damaged one is a clear error at once."""
    study = Study(args.study, args.logs)
    study.read()
    return study


def cmd_spaces(args: argparse.Namespace, console: Console) -> int:
    from search.show import spaces_table

    console.print(spaces_table({name: space_mod.load(name) for name in space_mod.builtin_spaces()}))
    return 0


def search_args(p: argparse.ArgumentParser) -> None:
    add = p.add_argument

    def count(flag: str, **kwargs: Any) -> None:
        """A flag for one of `SearchOptions`' counts, checked against its least value."""
        name = flag.removeprefix("--").replace("-", "_")
        add(flag, type=count_type(name), default=DEFAULTS[name], **kwargs)

    add("--space", required=True, help="built-in space name or path to a .toml")
    add("--tuner", default=DEFAULTS["tuner"], choices=options.TUNERS)
    add("--study", help="study name under --logs (default: the space's name)")
    count("--max-trials", help="trial budget (default: the tuner's)")
    count("--max-epochs", help="cap on epochs per trial")
    count("--train-size", help="search on a stratified subset of the images")
    count("--val-size", help="validation images")
    count("--executions", help="seeds per trial")
    count("--patience", help="epochs without gain")
    add("--overwrite", action="store_true", help="delete the study and start over")
    add("--plan", action="store_true", help="print trials, epochs and time; train nothing")
    count("--max-failures", help="in a row")
    add("--workers", type=at_least(1), help="a chief and N workers on 127.0.0.1")
    add("--chief", metavar="HOST:PORT", help="serve the oracle here to `digits worker`")
    add("--worker-timeout", type=at_least(10, float), default=WORKER_TIMEOUT, metavar="SECONDS")
    add("--strategy", choices=("mirrored",), help="train each trial on all local GPUs")
    add("--time-budget", type=duration, metavar="DURATION", help="e.g. 45m, 2h, 1h30")


def in_child() -> bool:
    """Whether this process was started by `processes.recycled`, which replaces it when it
    leaves with RECYCLE_EXIT."""
    return bool(os.environ.get(options.SUPERVISED))


def supervised(args: argparse.Namespace) -> dict[str, Any]:
    """The options of a process that trains trials: in the child of `processes.recycled`
    it may leave to a fresh one, which carries on the search."""
    if not in_child():
        return {"recycle": 0.0}
    started = os.environ.get(options.CONTINUES)
    return {"recycle": args.recycle, "started": float(started) if started else None}


def cmd_search(args: argparse.Namespace, console: Console) -> int:
    space = space_mod.load(args.space)  # validate before the slow imports
    trains = not (args.plan or args.workers or args.chief)
    if trains and args.recycle and not in_child():
        from search.processes import recycled

        return recycled(args.argv)
    quiet_tensorflow()
    from search import distribute
    from search.plan import plan_search
    from search.tune import run_search

    opts = SearchOptions.from_args(
        args, study=args.study or space.name, root=args.logs, **supervised(args)
    )
    study = Study(opts.study, opts.root)
    if args.plan:
        plan_search(space, opts, console)
    elif args.workers:
        if args.chief or args.time_budget:
            raise StudyError(
                "--workers runs its own chief on 127.0.0.1, without --chief or --time-budget"
            )
        return distribute.run_local(args.argv, study, args.workers, console)
    elif args.chief:
        watch = distribute.be_chief(args.chief, study, args.worker_timeout, console)
        run_search(space, opts, command=args.command, console=console, role="chief", watch=watch)
    elif run_search(space, opts, command=args.command, console=console).recycled:
        return options.RECYCLE_EXIT
    return 0


def worker_args(p: argparse.ArgumentParser) -> None:
    add = p.add_argument
    add("--chief", required=True, metavar="HOST:PORT")
    add("--study", required=True, help="the study, in a folder shared with the chief")
    add("--id", default=f"worker-{socket.gethostname()}-{os.getpid()}", help="restart with it")
    add("--connect-timeout", type=float, default=CONNECT_TIMEOUT, help="seconds")


def cmd_worker(args: argparse.Namespace, console: Console) -> int:
    from search import distribute, processes

    if args.recycle and not in_child():
        return processes.recycled(args.argv)
    study = Study(args.study, args.logs)
    space, settings = distribute.join_chief(study, args.chief, args.id, args.connect_timeout)
    quiet_tensorflow()
    from search.tune import run_search

    opts = SearchOptions(study=study.name, root=args.logs, **settings, **supervised(args))
    with distribute.heartbeat(study, args.id):
        tuner = run_search(space, opts, command=args.command, console=console, role="worker")
    return options.RECYCLE_EXIT if tuner.recycled else 0


def retrain_args(p: argparse.ArgumentParser) -> None:
    add = p.add_argument
    add("--top", type=count_type("top"), default=3, help="how many of the best trials")
    add("--seeds", type=count_type("seeds"), default=1, help="seeds per trial")
    add("--epochs", type=count_type("epochs"), help="per member (default: each trial's best)")
    add("--time-budget", type=duration, metavar="DURATION", help="size members to it, e.g. 20m")
    add("--subsample", type=share, default=1.0, metavar="SHARE", help="each its own share")


def cmd_retrain(args: argparse.Namespace, console: Console) -> int:
    study = _study(args)
    quiet_tensorflow()
    from search.retrain import plan_members, retrain

    with study.lock():
        members = plan_members(
            study, args.top, args.seeds, args.epochs, args.hold_out, args.subsample
        )
        retrain(study, members, console, args.time_budget)
    return 0


def cmd_ensemble(args: argparse.Namespace, console: Console) -> int:
    study = _study(args)
    quiet_tensorflow()
    from search.pipeline import evaluate_and_report
    from search.show import print_evaluated

    evaluated = evaluate_and_report(study, bool(args.tta))
    print_evaluated(console, evaluated.evaluation, evaluated.report, evaluated.folder)
    return 0


def export_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--name", help="folder under --models (default: the study's name)")
    p.add_argument("--format", default=",".join(options.EXPORT_FORMATS))


def cmd_export(args: argparse.Namespace, console: Console) -> int:
    formats = tuple(f.strip() for f in args.format.split(",") if f.strip())
    study = _study(args)
    quiet_tensorflow()
    from search.export import export

    path = export(study, args.name or args.study, formats, args.command, args.models)
    console.print(f"Exported {', '.join(formats)} to {path}/")
    return 0


def run_args(p: argparse.ArgumentParser) -> None:
    add = p.add_argument
    add(
        "--preset", choices=tuple(options.PRESETS), default="quick", help="quick ~15 min, full ~2 h"
    )
    add("--study", help="study and model name (default: the preset's name)")
    add("--time-budget", type=duration, metavar="DURATION", help="of the whole run, e.g. 15m")


def cmd_run(args: argparse.Namespace, console: Console) -> int:
    quiet_tensorflow()
    from search.pipeline import run_preset
    from search.show import print_evaluated, print_run

    chosen = ("models", "seed", "data", "hold_out", "tta", "time_budget", "command")
    study = Study(args.study or args.preset, args.logs)
    outcome = run_preset(
        args.preset, study, console=console, **{k: getattr(args, k) for k in chosen}
    )
    ev = outcome.evaluated
    print_evaluated(console, ev.evaluation, ev.report, ev.folder)
    print_run(console, ev.evaluation["ensemble"], outcome.export_dir, outcome.parts)
    return 0


def fidelity_args(p: argparse.ArgumentParser) -> None:
    add = p.add_argument
    add("--epochs", type=count_type("epochs"), help="full fidelity (default: each trial's own)")
    # A rank correlation needs two configurations at least.
    add("--sample", type=at_least(2), default=8, help="configurations spread over the ranking")
    add("--seeds", type=at_least(2), default=2, help="seeds per configuration")


def cmd_fidelity(args: argparse.Namespace, console: Console) -> int:
    study = _study(args)
    quiet_tensorflow()
    from search.fidelity import measure
    from search.results import FIDELITY_FILE
    from search.show import print_fidelity

    with study.lock():
        result = measure(study, args.sample, args.seeds, args.epochs, console)
    print_fidelity(console, result, study.dir / FIDELITY_FILE)
    return 0


def compare_args(p: argparse.ArgumentParser) -> None:
    add = p.add_argument
    add("--study", action="append", required=True, help="a study under --logs; repeat it")
    add("--json", action="store_true", help="print JSON instead of tables")


def cmd_compare(args: argparse.Namespace, console: Console) -> int:
    from search import api
    from search.show import print_compare

    result = api.compare(args.study, root=args.logs)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_compare(console, result)
    return 0


def predict_args(p: argparse.ArgumentParser) -> None:
    add = p.add_argument
    add(
        "images",
        nargs="+",
        type=Path,
        metavar="IMAGE",
        help="image files (PNG, JPEG, TIFF, .npy, ...) or folders of them",
    )
    add("--model", type=Path, help="an export or .keras file (default: the only one)")
    add("--json", action="store_true", help="JSON with the top 3 digits")
    add("--number", action="store_true", help="read each image as a number: digits in a row")
    add("--show", type=folder_path, metavar="DIR", help="write the 28x28 images it saw here")


def cmd_predict(args: argparse.Namespace, console: Console) -> int:
    from search.predict import classify, find_model, show

    model_file = find_model(args.model, args.models)
    quiet_tensorflow()
    predictions, errors = classify(model_file, args.images, args.number)
    if args.json:
        print(json.dumps([p.as_dict() for p in predictions] + errors, indent=2))
    else:
        for p in predictions:
            if not args.number:
                console.print(f"{p.file}: {p.digit} ({p.probability:.1%})")
                continue
            each = " ".join(f"{d.probability:.1%}" for d in p.digits)
            digits = f"; each {each}" if len(p.digits) > 1 else ""
            console.print(f"{p.file}: {p.text} ({p.probability:.1%}{digits})")
    stderr = Console(stderr=True, highlight=False, soft_wrap=True)
    for p in predictions:
        if p.warning and not args.json:  # JSON carries it in the prediction
            stderr.print(f"[yellow]warning:[/] {escape(p.file)}: {p.warning}")
    for e in errors:
        stderr.print(f"[red]error:[/] {escape(e['file'])}: {escape(e['error'])}")
    if args.show:  # after the predictions: a folder that cannot be written loses only these
        with writing(args.show):
            show(predictions, args.show)
    return 2 if errors else 0


def results_args(p: argparse.ArgumentParser) -> None:
    add = p.add_argument
    add("--top", type=at_least(1), help="only the best K trials")
    add("--csv", type=file_to_write, help="also write the table to this CSV file")
    add("--json", action="store_true", help="print JSON instead of a table")
    add("--importance", action="store_true", help="which hyperparameters matter, with plots")


def cmd_results(args: argparse.Namespace, console: Console) -> int:
    from search import results, show

    study = _study(args)
    every = results.trial_rows(study)
    rows = every[: args.top]
    if args.csv:
        with writing(args.csv):
            write_atomic(args.csv, results.to_csv(rows))
        console.print(f"Wrote {len(rows)} trials to {args.csv}")
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    show.print_results(console, study.name, rows, every, results.read_fidelity(study))
    if args.importance:
        quiet_tensorflow()
        from search.report import importance_report

        show.print_importance(console, importance_report(study, rows), study.dir / "importance")
    return 0


def board_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--port", type=int, default=PORT)
    p.add_argument("--study", help="show only this study")


def cmd_board(args: argparse.Namespace, console: Console) -> int:
    from search.board import serve

    return serve(args.logs / args.study if args.study else args.logs, args.port, console)


# name, help, the handler, what declares its own arguments, the shared options it takes.
COMMANDS: list[tuple[str, str, Handler, Callable | None, str]] = [
    ("spaces", "the built-in search spaces", cmd_spaces, None, ""),
    ("search", "run (or resume) a search", cmd_search, search_args, "data seed logs recycle"),
    ("worker", "train trials for a search's chief", cmd_worker, worker_args, "logs recycle"),
    ("retrain", "retrain the best trials", cmd_retrain, retrain_args, "study logs hold_out"),
    ("fidelity", "does the ranking hold long?", cmd_fidelity, fidelity_args, "study logs"),
    ("compare", "held-out members, on validation", cmd_compare, compare_args, "logs"),
    ("ensemble", "average the members, test once", cmd_ensemble, None, "study logs tta"),
    ("export", "write best_models/<name>/", cmd_export, export_args, "study logs models"),
    ("predict", "classify digit images", cmd_predict, predict_args, "models"),
    ("run", "a preset's whole job", cmd_run, run_args, "data seed logs models hold_out tta"),
    ("results", "a study's trials as a table", cmd_results, results_args, "study logs"),
    ("board", "TensorBoard on the studies", cmd_board, board_args, "logs"),
]


def build_parser() -> argparse.ArgumentParser:
    description = (
        "Hyperparameter search for handwritten-digit CNNs (Keras, keras-tuner, TensorBoard)."
    )
    parser = argparse.ArgumentParser(prog="digits", description=description)
    sub = parser.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    shared = {  # options several commands take, declared once
        "logs": options.shared(
            "--logs", type=folder_path, default=DEFAULT_ROOT, help="where studies live"
        ),
        "study": options.shared("--study", required=True, help="study name under --logs"),
        "data": options.shared(
            "--data", help=".npz (Keras layout) or folder of IDX files; default MNIST"
        ),
        "models": options.shared(
            "--models", type=folder_path, default=options.MODELS_ROOT, help="where exports live"
        ),
        "seed": options.shared(
            "--seed", type=int, default=DEFAULTS["seed"], help="fixes split, seeds"
        ),
        "hold_out": options.shared("--hold-out", action="store_true", help="keep validation out"),
        "tta": options.shared(
            "--tta",
            action=argparse.BooleanOptionalAction,
            help="test-time augmentation: members also read the image turned 5 degrees each "
            "way (run: default the preset's; quick uses it)",
        ),
        "recycle": options.shared(
            "--recycle",
            type=at_least(0, float),
            default=options.RECYCLE_MIB,
            metavar="MIB",
            help="carry on in a fresh process once memory grew by MIB (Keras keeps some "
            "memory of every trial); 0: one process",
        ),
    }
    for name, help, func, declare, takes in COMMANDS:
        parents = [shared[option] for option in takes.split()]
        p = sub.add_parser(name, help=help, parents=parents, formatter_class=options.DefaultsHelp)
        p.set_defaults(func=func)
        if declare:
            declare(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the `digits` command line; returns the exit status."""
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    args.command = shlex.join(["digits", *argv])
    args.argv = argv
    # A log file or pipe has no width: let tables be as wide as they need, not 80 columns.
    console = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 200)
    errors = Console(stderr=True, highlight=False, soft_wrap=True)
    try:
        return args.func(args, console)
    except USER_ERRORS as e:
        errors.print(f"[red]error:[/] {escape(str(e))}")
        return 2
    except KeyboardInterrupt:
        errors.print("interrupted; rerun the same command to resume")
        return 130


if __name__ == "__main__":
    sys.exit(main())
