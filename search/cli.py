"""The `digits` command: small subcommands over the modules, `main(argv) -> int`.

TensorFlow is imported only inside the commands that train, so `digits --help` and
`digits spaces` answer at once. User mistakes (a bad space, bad data, a study in use) print one
line to stderr and exit with status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from search import space as space_mod
from search.data import DataError
from search.space import SpaceError
from search.study import DEFAULT_ROOT, StudyError

USER_ERRORS = (SpaceError, DataError, StudyError)
BOARD_PORT = 6006


def _quiet_tensorflow() -> None:
    # TensorFlow's C++ start-up chatter (no CUDA here, oneDNN notices) drowns the progress
    # lines; real errors still surface as Python exceptions.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def cmd_spaces(args: argparse.Namespace, console: Console) -> int:
    table = Table(title="Built-in search spaces (spaces/*.toml)", title_justify="left")
    for column in ("name", "configurations", "description"):
        table.add_column(column)
    for name in space_mod.builtin_spaces():
        s = space_mod.load(name)
        size = s.size()
        table.add_row(name, f"{size:,}" if size is not None else "continuous", s.description)
    console.print(table)
    return 0


def cmd_search(args: argparse.Namespace, console: Console) -> int:
    space = space_mod.load(args.space)  # validate before the slow imports
    _quiet_tensorflow()
    from search.tune import SearchOptions, run_search

    opts = SearchOptions(
        study=args.study or space.name,
        tuner=args.tuner,
        max_trials=args.max_trials,
        max_epochs=args.max_epochs,
        train_size=args.train_size,
        val_size=args.val_size,
        executions=args.executions,
        patience=args.patience,
        seed=args.seed,
        data=args.data,
        root=args.logs,
        overwrite=args.overwrite,
    )
    run_search(space, opts, command=args.command, console=console)
    return 0


def cmd_board(args: argparse.Namespace, console: Console) -> int:
    logdir = args.logs / args.study if args.study else args.logs
    if not logdir.exists():
        raise StudyError(f"{logdir}: nothing to show yet; run `digits search` first")
    cmd = [
        sys.executable,
        "-m",
        "tensorboard.main",
        "--logdir",
        str(logdir),
        "--host",
        "127.0.0.1",
        "--port",
        str(args.port),
    ]
    proc = subprocess.Popen(cmd, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{args.port}/"
    try:
        if not _wait_http(url, proc, timeout=60):
            raise StudyError(f"TensorBoard did not start on port {args.port} (in use?)")
        console.print(f"TensorBoard on {logdir}/ at {url}  (HParams: {url}#hparams) · Ctrl-C stops")
        return proc.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=10)


def _wait_http(url: str, proc: subprocess.Popen, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return True
        except OSError:
            time.sleep(0.3)
    return False


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="digits",
        description="Hyperparameter search for handwritten-digit CNNs (Keras, keras-tuner, "
        "TensorBoard).",
    )
    sub = parser.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    p = sub.add_parser("spaces", help="list the built-in search spaces")
    p.set_defaults(func=cmd_spaces)

    p = sub.add_parser(
        "search",
        help="run (or resume) a tuning search",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--space", required=True, help="built-in space name or path to a .toml")
    p.add_argument(
        "--tuner", default="hyperband", choices=("hyperband", "random", "bayesian", "grid")
    )
    p.add_argument("--study", help="study name under --logs (default: the space's name)")
    p.add_argument(
        "--max-trials",
        type=_positive,
        help="trial budget (default: random/bayesian "
        "10, grid the whole grid, hyperband its brackets)",
    )
    p.add_argument(
        "--max-epochs", type=_positive, help="cap on epochs per trial (default: the space's epochs)"
    )
    p.add_argument(
        "--train-size",
        type=_positive,
        help="train on a stratified subset of this many images, for fast searches",
    )
    p.add_argument(
        "--val-size",
        type=_positive,
        default=5000,
        help="validation images carved from the training set",
    )
    p.add_argument("--executions", type=_positive, default=1, help="trainings per trial, averaged")
    p.add_argument(
        "--patience",
        type=_positive,
        default=3,
        help="stop a trial after this many epochs without a better val_accuracy",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--data", help=".npz in Keras layout or folder of IDX files (default: the bundled MNIST)"
    )
    p.add_argument("--logs", type=Path, default=DEFAULT_ROOT, help="where studies live")
    p.add_argument("--overwrite", action="store_true", help="delete the study and start over")
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("board", help="start TensorBoard on the studies (127.0.0.1)")
    p.add_argument("--port", type=int, default=BOARD_PORT)
    p.add_argument("--study", help="show only this study")
    p.add_argument("--logs", type=Path, default=DEFAULT_ROOT)
    p.set_defaults(func=cmd_board)
    return parser


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def main(argv: list[str] | None = None) -> int:
    """Run the `digits` command line; returns the exit status."""
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    args.command = shlex.join(["digits", *argv])
    console = Console(highlight=False, soft_wrap=True)
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
