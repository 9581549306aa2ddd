"""The `digits` command: small subcommands over the modules, `main(argv) -> int`.

TensorFlow is imported only inside the commands that train, so `digits --help` and
`digits spaces` answer at once. User mistakes (a bad space, bad data, a study in use) print one
line to stderr and exit with status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.request
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from search import space as space_mod
from search.budget import parse_duration
from search.data import DataError
from search.space import SpaceError
from search.study import DEFAULT_ROOT, Study, StudyError, write_atomic

USER_ERRORS = (SpaceError, DataError, StudyError)
BOARD_PORT = 6006
WORKER_TIMEOUT = 60.0  # seconds of silence after which a chief gives a worker's trial away
MODELS_ROOT = Path("best_models")
# Time a run keeps back from its budget for the ensemble, the test evaluation and the export.
FINISH_SECONDS = 60
# `digits run` presets: a search, then retraining of its best configurations. Every stage
# resumes: rerun the same command after an interruption.
PRESETS: dict[str, dict] = {
    "quick": {  # the README's main job: within 15 minutes on a 2-core CPU
        "space": "quick",
        "search": {"tuner": "random", "max_trials": 4, "max_epochs": 2, "train_size": 10000},
        # Epochs: as many as the 15 minutes leave after the search, up to 12 (by then the
        # space's per-epoch decay has cut the learning rate below 3% of its start); one
        # member alone where two would get fewer than 5 each (retrain.MIN_EPOCHS).
        "retrain": {"top": 2, "seeds": 1, "epochs": 12},
        "time_budget": 15 * 60,
    },
    "seed": {  # the original write-up's families
        "space": "seed_v2",
        "search": {"tuner": "hyperband", "max_epochs": 6},
        "retrain": {"top": 3, "seeds": 1, "epochs": None},
    },
    "full": {  # the best accuracy within 2 hours on a 2-core CPU
        "space": "full",
        # Every one of the space's 6 configurations (dense width x learning rate), 3 epochs each.
        "search": {"tuner": "grid", "max_epochs": 3, "train_size": 20000},
        # Members of 40 epochs: on the validation split two of them erred less than two of 24
        # (22 errors of 5,000 against 28; BENCHMARKS.md, longer); 60 or wider blocks did no
        # better (longest, wide), six averaged better than any pair (19 against 22-25; pool).
        # Five took 92 of the 120 min on the Intel VM (seed 11, batches of 128) and 94-101 on
        # the slower AMD VM (seeds 15-17, batches of 256, the space's since); where time is short,
        # each member gets the epochs the time left affords as it starts (seed 14: 35, 39, 40;
        # seed 20 on an AVX2-only EPYC: 12-14, and 31 test errors as the 40-epoch runs).
        "retrain": {"top": 5, "seeds": 1, "epochs": 40},
        "time_budget": 2 * 3600,
    },
    "smoke": {  # for tests: seconds
        "space": "smoke",
        "search": {
            "tuner": "random",
            "max_trials": 2,
            "max_epochs": 1,
            "train_size": 600,
            "val_size": 200,
        },
        "retrain": {"top": 2, "seeds": 1, "epochs": 1},
    },
}


def _quiet_tensorflow() -> None:
    """Import TensorFlow with its start-up chatter kept off the terminal.

    Importing it and starting its runtime print a dozen lines through C++ logging that no
    environment variable of this TensorFlow silences (absl's "All log messages before
    absl::InitializeLog()", oneDNN and CPU-feature notices, a failed CUDA probe on a machine
    without a GPU). They go to a temporary file instead, replayed if the import fails, so a
    broken install still explains itself. Python-side retracing warnings (one per member
    evaluated in a loop) are muted too; real errors still surface as exceptions.
    """
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    if "tensorflow" in sys.modules:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow as tf

            tf.config.list_logical_devices()  # starts the runtime: the CUDA probe speaks here
        except BaseException:
            os.dup2(saved, 2)
            captured.seek(0)
            sys.stderr.write(captured.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


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
    from search.tune import SearchOptions, plan_search, run_search

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
        time_budget=args.time_budget,
        strategy=args.strategy,
        max_failures=args.max_failures,
    )
    if args.plan:
        plan_search(space, opts, console)
    elif args.workers:
        from search.distribute import run_local

        if args.chief or args.time_budget:
            raise StudyError(
                "--workers runs its own chief on 127.0.0.1, and takes no --chief or --time-budget"
            )
        return run_local(
            _without(args.argv, "--workers"), Study(opts.study, opts.root), args.workers, console
        )
    elif args.chief:
        from search.distribute import oracle_env, parse_address, watch_workers

        os.environ.update(oracle_env(*parse_address(args.chief), "chief"))
        study = Study(opts.study, opts.root)

        def watch(oracle: Any) -> Any:
            return watch_workers(oracle, study, args.worker_timeout, console)

        run_search(space, opts, command=args.command, console=console, role="chief", watch=watch)
    else:
        run_search(space, opts, command=args.command, console=console)
    return 0


def cmd_worker(args: argparse.Namespace, console: Console) -> int:
    from search.distribute import (
        heartbeat,
        oracle_env,
        parse_address,
        wait_for_chief,
        wait_for_record,
        worker_options,
    )

    host, port = parse_address(args.chief)
    _quiet_tensorflow()
    wait_for_chief(host, port, args.connect_timeout)
    study = Study(args.study, args.logs)
    wait_for_record(study, args.connect_timeout)
    settings = worker_options(study)
    space = space_mod.parse(tomllib.loads(settings["space_toml"]), Path(settings["space_path"]))
    os.environ.update(oracle_env(host, port, args.id))
    from search.tune import SearchOptions, run_search

    opts = SearchOptions(study=study.name, root=args.logs, **settings["options"])
    with heartbeat(study, args.id):
        run_search(space, opts, command=args.command, console=console, role="worker")
    return 0


def _without(argv: list[str], flag: str) -> list[str]:
    """`argv` without `flag VALUE` (or `flag=VALUE`)."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == flag:
            skip = True
        elif not a.startswith(f"{flag}="):
            out.append(a)
    return out


def cmd_retrain(args: argparse.Namespace, console: Console) -> int:
    study = Study(args.study, args.logs)
    study.read()  # a clear error for a missing or damaged study before TensorFlow loads
    _quiet_tensorflow()
    from search.retrain import plan_members, retrain

    with study.lock():
        members = plan_members(
            study, args.top, args.seeds, args.epochs, args.hold_out, args.subsample
        )
        retrain(study, members, console, args.time_budget)
    return 0


def cmd_ensemble(args: argparse.Namespace, console: Console) -> int:
    study = Study(args.study, args.logs)
    study.read()
    ensemble_and_report(study, console, args.tta)
    return 0


def ensemble_and_report(study: Study, console: Console, tta: bool = False) -> dict:
    """Build and evaluate the ensemble, write the error analysis; returns the evaluation."""
    _quiet_tensorflow()
    from search.ensemble import ensemble_dir, evaluate
    from search.report import write_report
    from search.retrain import load_study_data

    with study.lock():
        dataset = load_study_data(study)
        _, evaluation, probs = evaluate(study, dataset, tta)
        folder = ensemble_dir(study)
        summary = write_report(
            folder / "report",
            dataset.x_test,
            dataset.y_test,
            probs,
            f"study {study.name}",
            tensorboard_dir=folder / "tensorboard",
        )
    if "validation" in evaluation:
        _print_validation(console, evaluation["validation"])
    _print_evaluation(console, evaluation, summary)
    console.print(f"Ensemble: {folder}/ensemble.keras · report: {folder}/report/")
    return evaluation


def _print_validation(console: Console, validation: dict) -> None:
    table = Table(
        title=f"Validation split ({validation['images']:,} images, held out of retraining)",
        title_justify="left",
    )
    for column in ("best k members (search order)", "accuracy", "with TTA"):
        table.add_column(column, justify="left" if column.startswith("best") else "right")
    for row in validation["by_size"]:
        table.add_row(
            f"{len(row['members'])}: {', '.join(row['members'])}",
            f"{row['accuracy']:.2%}",
            f"{row['tta_accuracy']:.2%}",
        )
    console.print(table)


def _print_evaluation(console: Console, evaluation: dict, summary: dict) -> None:
    table = Table(title="Test set (read once, after every choice)", title_justify="left")
    for column in ("model", "val acc (search)", "test acc", "errors"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for m in evaluation["members"]:
        table.add_row(
            m["member"],
            f"{m['val_accuracy_in_search']:.4f}",
            f"{m['test_accuracy']:.4%}",
            str(m["test_errors"]),
        )
    ens = evaluation["ensemble"]
    table.add_row(
        f"[bold]ensemble of {ens['size']}{' with TTA' if ens.get('tta') else ''}[/]",
        "",
        f"[bold]{ens['test_accuracy']:.4%}[/]",
        str(ens["test_errors"]),
    )
    console.print(table)
    console.print(
        f"Ensemble gain: {evaluation['gain_over_best_member']:+.2%} over the best member, "
        f"{evaluation['gain_over_mean_member']:+.2%} over the mean member."
    )
    pairs = ", ".join(f"{p['pair']} ({p['errors']})" for p in summary["most_confused_pairs"][:5])
    console.print(f"Most confused pairs: {pairs or 'none'}")


def cmd_export(args: argparse.Namespace, console: Console) -> int:
    formats = tuple(f.strip() for f in args.format.split(",") if f.strip())
    _quiet_tensorflow()
    from search.export import export

    study = Study(args.study, args.logs)
    study.read()
    path = export(study, args.name or args.study, formats, args.command, args.models)
    console.print(f"Exported {', '.join(formats)} to {path}/")
    return 0


def cmd_run(args: argparse.Namespace, console: Console) -> int:
    preset = PRESETS[args.preset]
    space = space_mod.load(preset["space"])
    name = args.study or args.preset
    _quiet_tensorflow()
    from search.export import FORMATS, export
    from search.retrain import plan_members, retrain
    from search.tune import SearchOptions, run_search

    budget = args.time_budget or preset.get("time_budget")
    study = Study(name, args.logs)
    # The budget counts every part of an interrupted run, not only this one.
    with study.run_clock() as parts:

        def stage(title: str) -> None:
            console.rule(f"{title} · {sum(parts()) / 60:.1f} min in")

        stage(f"1/4 search · preset {args.preset}")
        opts = SearchOptions(
            study=name, root=args.logs, seed=args.seed, data=args.data, **preset["search"]
        )
        run_search(space, opts, command=args.command, console=console)
        stage("2/4 retrain")
        left = None if budget is None else budget - sum(parts()) - FINISH_SECONDS
        with study.lock():
            members = plan_members(study, **preset["retrain"], hold_out=args.hold_out)
            retrain(study, members, console, left)
        stage("3/4 ensemble and evaluate")
        evaluation = ensemble_and_report(study, console, args.tta)
        stage("4/4 export")
        path = export(study, name, FORMATS, args.command, args.models)
        spent = parts()
    took = f"{sum(spent) / 60:.1f} min" + (f" in {len(spent)} parts" if len(spent) > 1 else "")
    console.print(
        f"[bold]Test accuracy {evaluation['ensemble']['test_accuracy']:.2%}[/] "
        f"({evaluation['ensemble']['test_errors']} errors) · model in {path}/ · "
        f"this run took {took}"
    )
    return 0


def cmd_fidelity(args: argparse.Namespace, console: Console) -> int:
    from search.results import fidelity_line

    study = Study(args.study, args.logs)
    study.read()
    _quiet_tensorflow()
    from search.fidelity import measure

    with study.lock():
        result = measure(study, args.sample, args.seeds, args.epochs, console)
    table = Table(
        title=f"Search score against full fidelity ({result['val_images']:,} validation images)",
        title_justify="left",
    )
    for column in ("search rank", "trial", "search score", "val errors by seed", "mean", "acc"):
        table.add_column(column, justify="right")
    for c in result["configurations"]:
        table.add_row(
            str(c["rank"] + 1),
            c["trial"],
            f"{c['search_score']:.4f}",
            ", ".join(map(str, c["val_errors"])),
            f"{c['mean_val_errors']:.1f}",
            f"{c['full_val_accuracy']:.4%}",
        )
    console.print(table)
    console.print(fidelity_line(result))
    console.print(f"Saved in {study.dir / 'fidelity.json'}; `digits results` shows it too.")
    return 0


def cmd_predict(args: argparse.Namespace, console: Console) -> int:
    from search.predict import ImageError, classify, find_model

    try:
        model_file = find_model(args.model, args.models)
    except ImageError as e:
        raise StudyError(str(e)) from None
    _quiet_tensorflow()
    predictions, errors = classify(model_file, args.images)
    errs = Console(stderr=True, highlight=False, soft_wrap=True)
    if args.json:
        rows = [
            {
                "file": p.file,
                "digit": p.digit,
                "probability": round(p.probability, 6),
                "top3": [{"digit": d, "probability": round(q, 6)} for d, q in p.top3],
            }
            for p in predictions
        ]
        rows += [{"error": e} for e in errors]
        print(json.dumps(rows, indent=2))
    else:
        for p in predictions:
            console.print(f"{p.file}: {p.digit} ({p.probability:.1%})")
    for e in errors:
        errs.print(f"[red]error:[/] {escape(e)}")
    return 2 if errors else 0


def cmd_results(args: argparse.Namespace, console: Console) -> int:
    from search.results import (
        FIELDS,
        columns,
        fidelity_line,
        format_score,
        noise_line,
        read_fidelity,
        seed_noise,
        to_csv,
        trial_rows,
    )

    study = Study(args.study, args.logs)
    study.read()
    every = trial_rows(study)
    rows = every[: args.top]
    if args.csv:
        write_atomic(args.csv, to_csv(rows))
        console.print(f"Wrote {len(rows)} trials to {args.csv}")
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    # On screen: the fixed columns that say something here, and the hyperparameters that
    # differ between trials. The seed spread is shown with the score (mean ± sd).
    hidden = {"reason", "val_std", "val_scores"}
    if not any((r["executions"] or 0) > 1 for r in rows):
        hidden.add("executions")
    if all(r["full_val_accuracy"] is None for r in rows):
        hidden.add("full_val_accuracy")
    varying = [c for c in columns(rows)[len(FIELDS) :] if len({str(r.get(c)) for r in rows}) > 1]
    table = Table(title=f"Study {study.name}: {len(rows)} trials, best first", title_justify="left")
    shown = [c for c in FIELDS if c not in hidden] + varying
    for c in shown:
        table.add_column(HEADERS.get(c, c), justify="left" if c == "status" else "right")
    for r in rows:
        cells = {"val_accuracy": format_score(r["val_accuracy"], r["val_std"])}
        table.add_row(
            *(cells[c] if c in cells and r[c] is not None else _cell(r.get(c)) for c in shown)
        )
    console.print(table)
    for r in rows:
        if r["reason"]:
            console.print(f"trial {r['trial']} failed: {escape(r['reason'])}")
    if any(r["val_accuracy"] is not None for r in every):
        console.print(noise_line(seed_noise(every)))
    fidelity = read_fidelity(study)
    if fidelity:
        console.print(fidelity_line(fidelity))
    if args.importance:
        show_importance(study, rows, console)
    return 0


def show_importance(study: Study, rows: list[dict], console: Console) -> None:
    from search.importance import analyse
    from search.results import columns

    params = study.read()["space"]["params"]
    log_params = {name for name, text in params.items() if text.endswith(" log")}
    names = [c for c in columns(rows) if c in params]
    folder = study.dir / "importance"
    summary = analyse(rows, names, log_params, folder)
    if summary["ranking"]:
        table = Table(
            title="Hyperparameter importance (random forest, permutation)", title_justify="left"
        )
        table.add_column("hyperparameter")
        table.add_column("share", justify="right")
        for name, share in summary["ranking"]:
            table.add_row(name, f"{share:.0%}")
        console.print(table)
        _quiet_tensorflow()
        from search.report import log_images

        log_images(folder, [Path(p) for p in summary["plots"]])
        console.print(f"Score-vs-value plots: {folder}/ (also in TensorBoard's image tab)")
    if summary["note"]:
        console.print(f"[yellow]note:[/] {summary['note']}")


HEADERS = {
    "val_accuracy": "val acc",
    "executions": "runs",
    "full_val_accuracy": "full val acc",
    "best_epoch": "best ep",
    "epochs_run": "epochs",
    "seconds": "sec",
    "parameters": "params",
    "images_per_s": "img/s",
}


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}" if value < 1 else f"{value:,.0f}"
    return str(value)


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
    # `kill` (SIGTERM) stops the board like Ctrl-C: through the `finally` below, which stops
    # TensorBoard too; by default Python would die at once and leave TensorBoard running.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
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

    # Options several commands share, declared once.
    logs = _parent("--logs", type=Path, default=DEFAULT_ROOT, help="where studies live")
    study = _parent("--study", required=True, help="study name under --logs")
    data = _parent(
        "--data", help=".npz in Keras layout or folder of IDX files (default: the bundled MNIST)"
    )
    models = _parent("--models", type=Path, default=MODELS_ROOT, help="where exports live")
    seed = _parent("--seed", type=int, default=0, help="fixes the split, the tuner and the seeds")
    hold_out = _parent(
        "--hold-out",
        action="store_true",
        help="retrain without the validation split, to measure ensemble size and TTA on it",
    )
    tta = _parent(
        "--tta", action="store_true", help="test-time augmentation: average one-pixel shifts"
    )

    def command(name: str, help: str, func: Any, *parents: argparse.ArgumentParser) -> Any:
        p = sub.add_parser(
            name,
            help=help,
            parents=list(parents),
            formatter_class=_DefaultsHelp,
        )
        p.set_defaults(func=func)
        return p

    command("spaces", "list the built-in search spaces", cmd_spaces)

    p = command("search", "run (or resume) a tuning search", cmd_search, data, seed, logs)
    p.add_argument("--space", required=True, help="built-in space name or path to a .toml")
    p.add_argument(
        "--tuner", default="hyperband", choices=("hyperband", "random", "bayesian", "grid")
    )
    p.add_argument("--study", help="study name under --logs (default: the space's name)")
    p.add_argument(
        "--max-trials",
        type=_positive,
        help="trial budget (default: random and "
        "bayesian 10, grid the whole grid, hyperband its brackets)",
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
    p.add_argument(
        "--executions",
        type=_positive,
        default=1,
        help="trainings per trial with different seeds: the score is their mean, and their "
        "spread tells a real difference from seed noise",
    )
    p.add_argument(
        "--patience",
        type=_positive,
        default=3,
        help="stop a trial after this many epochs without a better val_accuracy",
    )
    p.add_argument("--overwrite", action="store_true", help="delete the study and start over")
    p.add_argument(
        "--plan",
        action="store_true",
        help="print the trials, epochs and an "
        "estimated wall time (from a few seconds of calibration); train nothing",
    )
    p.add_argument(
        "--max-failures",
        type=_positive,
        default=3,
        help="stop the search after this many consecutive failed trials",
    )
    p.add_argument(
        "--workers",
        type=_positive,
        help="run a chief and this many workers on 127.0.0.1 (keras-tuner's distributed mode)",
    )
    p.add_argument(
        "--chief",
        metavar="HOST:PORT",
        help="be the chief of a distributed "
        "search, serving the oracle here; start workers with `digits worker`",
    )
    p.add_argument(
        "--worker-timeout",
        type=_worker_timeout,
        default=WORKER_TIMEOUT,
        metavar="SECONDS",
        help="chief: give the trial of a worker silent this long to the other workers",
    )
    p.add_argument(
        "--strategy",
        choices=("mirrored",),
        help="train each trial on all local "
        "GPUs with tf.distribute (on a CPU-only machine: the CPU)",
    )
    p.add_argument(
        "--time-budget",
        type=_duration,
        metavar="DURATION",
        help="e.g. 45m, 2h, 1h30m: start no trial that cannot finish in time; rerun to continue",
    )

    p = command("worker", "train trials for a distributed search's chief", cmd_worker, logs)
    p.add_argument("--chief", required=True, metavar="HOST:PORT")
    p.add_argument("--study", required=True, help="the study, in a folder shared with the chief")
    p.add_argument(
        "--id",
        default=f"worker-{socket.gethostname()}-{os.getpid()}",
        help="this worker's id; restart a dead worker with the same id and it "
        "reruns its unfinished trial",
    )
    p.add_argument(
        "--connect-timeout", type=float, default=60.0, help="seconds to wait for the chief"
    )

    p = command(
        "retrain",
        "retrain the best configurations on all training data",
        cmd_retrain,
        study,
        logs,
        hold_out,
    )
    p.add_argument("--top", type=_positive, default=3, help="how many of the best trials")
    p.add_argument("--seeds", type=_positive, default=1, help="seeds per trial")
    p.add_argument(
        "--epochs",
        type=_positive,
        help="epochs per member (default: the epoch each trial peaked at)",
    )
    p.add_argument(
        "--time-budget",
        type=_duration,
        metavar="DURATION",
        help="e.g. 20m, 1h: size each member, as it starts, to the time left (at most --epochs)",
    )
    p.add_argument(
        "--subsample",
        type=_share,
        default=1.0,
        metavar="SHARE",
        help="each member trains on its own stratified draw of this share of the images, "
        "e.g. 0.9 (default: all of them)",
    )

    command(
        "ensemble",
        "average the members, evaluate once on the test set",
        cmd_ensemble,
        study,
        logs,
        tta,
    )

    p = command(
        "export",
        "write best_models/<name>/ (keras, savedmodel, tflite)",
        cmd_export,
        study,
        logs,
        models,
    )
    p.add_argument("--name", help="folder under --models (default: the study's name)")
    p.add_argument("--format", default="keras,savedmodel,tflite")

    p = command("predict", "classify digit images (PNG, JPEG, .npy)", cmd_predict, models)
    p.add_argument("images", nargs="+", type=Path, metavar="IMAGE")
    p.add_argument(
        "--model",
        type=Path,
        help="an exported folder or .keras file (default: the only model under --models)",
    )
    p.add_argument("--json", action="store_true", help="JSON with the top 3 digits")

    p = command(
        "run",
        "search, retrain, ensemble, evaluate and export in one go",
        cmd_run,
        data,
        seed,
        logs,
        models,
        hold_out,
        tta,
    )
    p.add_argument(
        "--preset",
        choices=tuple(PRESETS),
        default="quick",
        help="quick: ~15 min on 2 CPU cores; seed: the write-up's families; "
        "full: the long run for the best accuracy; smoke: seconds, for tests",
    )
    p.add_argument("--study", help="study and model name (default: the preset's name)")
    p.add_argument(
        "--time-budget",
        type=_duration,
        metavar="DURATION",
        help="wall time of the whole run, e.g. 15m, 2h: the retraining epochs (at most the "
        "preset's) are sized to what the search leaves (default: quick 15m, full 2h)",
    )

    p = command(
        "fidelity",
        "retrain a sample of a study's trials at full fidelity: does the search rank them right?",
        cmd_fidelity,
        study,
        logs,
    )
    p.add_argument(
        "--epochs",
        type=_positive,
        help="epochs of full fidelity, e.g. the retraining's (default: each trial's `epochs`)",
    )
    p.add_argument(
        "--sample",
        type=_positive,
        default=8,
        help="configurations to retrain, spread over the search's ranking (the pick always)",
    )
    p.add_argument("--seeds", type=_at_least_two, default=2, help="seeds per configuration")

    p = command(
        "results", "every trial of a study as a table (or CSV, JSON)", cmd_results, study, logs
    )
    p.add_argument("--top", type=_positive, help="only the best K trials")
    p.add_argument("--csv", type=Path, help="also write the table to this CSV file")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument(
        "--importance",
        action="store_true",
        help="rank the hyperparameters by influence on the score; plot score against each",
    )

    p = command("board", "start TensorBoard on the studies (127.0.0.1)", cmd_board, logs)
    p.add_argument("--port", type=int, default=BOARD_PORT)
    p.add_argument("--study", help="show only this study")
    return parser


class _DefaultsHelp(argparse.ArgumentDefaultsHelpFormatter):
    """Shows defaults, but not the empty ones ("default: None" says nothing)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default in (None, False):
            return action.help
        return super()._get_help_string(action)


def _parent(*flags: str, **kwargs: Any) -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(*flags, **kwargs)
    return parent


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def _at_least_two(text: str) -> int:
    value = int(text)
    if value < 2:
        raise argparse.ArgumentTypeError(f"must be at least 2 (a spread needs two), got {value}")
    return value


def _share(text: str) -> float:
    value = float(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be a share in (0, 1], got {value}")
    return value


def _worker_timeout(text: str) -> float:
    # Workers beat every 2 s; a timeout of a few beats tolerates a slow shared filesystem.
    value = float(text)
    if value < 10:
        raise argparse.ArgumentTypeError(f"must be at least 10 seconds, got {text}")
    return value


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
