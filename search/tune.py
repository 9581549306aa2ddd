"""Run a keras-tuner search over a space: the tuner, the study's record, resuming.

The tuners are keras-tuner's own, each with `DigitsTuner` mixed in: through keras-tuner's
hooks it records every trial (stats, each execution's score, trials.csv) and keeps the time
budget, while `progress.SearchProgress` prints. This module hands the tuner the HyperModel, a
`keras.callbacks.TensorBoard` (keras-tuner gives each trial its own log folder and writes the
HParams) and early stopping; what the search will run is `plan`'s, what it prints
`progress`'s. A search runs in this process, as the chief of a distributed one
(`serve_workers`) or as one of its workers (`work_for_chief`).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import resource
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import keras_tuner as kt
from rich.console import Console

from search import data as data_mod
from search.budget import SearchBudget, format_duration
from search.hypermodel import DigitsHyperModel
from search.kt_internals import ResumableGridOracle, quiet_failed_trials, replace_method
from search.options import OBJECTIVE, SearchOptions
from search.plan import (
    HYPERBAND_FACTOR,
    Plan,
    calibrate,
    check_tuner,
    estimate_seconds,
    make_plan,
    trial_epochs,
    warn_space,
)
from search.progress import SearchProgress, header, summarize
from search.results import failure_reason, trial_rows, update_csv, write_scores, write_stats
from search.space import Space
from search.study import Study, StudyError, new_record, read_json

quiet_failed_trials()

IDLE_PAUSE = 1.0  # seconds a distributed worker waits before asking its chief again
# What must match to resume a study: budgets (max_trials) may grow, and the data may move
# (its path), but not change (its checksum and split).
IDENTITY = {
    "space": lambda r: r["space"]["params"],
    "tuner": lambda r: r["tuner"],
    "max_epochs": lambda r: r["max_epochs"],
    "executions": lambda r: r["executions"],
    "data": lambda r: [r["data"][k] for k in ("sha256", "train", "val")],
    "seed": lambda r: r["seed"],
}


def make_strategy(name: str | None) -> Any:
    """`tf.distribute` strategy for `--strategy`; None trains on the default device."""
    if name is None:
        return None
    import tensorflow as tf

    if name != "mirrored":
        raise StudyError(f"unknown strategy '{name}': the one strategy is 'mirrored'")
    if tf.config.list_physical_devices("GPU"):
        return tf.distribute.MirroredStrategy()
    cpus = [d.name for d in tf.config.list_logical_devices("CPU")]
    Console(stderr=True).print(
        f"note: no GPU here; --strategy mirrored trains on the CPU ({len(cpus)} logical device(s))"
    )
    return tf.distribute.MirroredStrategy(devices=cpus)


class DigitsTuner:
    """keras-tuner's tuners with the toolkit's records and time budget, through their hooks.

    - `on_trial_begin`, `on_epoch_begin`, `on_epoch_end`: time each epoch, keep count;
    - `run_trial`: each execution's score (`scores.json`; keras-tuner keeps only their mean)
      and their mean and spread as scalars in the trial's TensorBoard runs (group "search"),
      where the HParams dashboard shows them;
    - `on_trial_end`: the trial's `stats.json` (epochs, seconds, epoch times, parameters,
      early stop), `trials.csv`, and the line `progress` prints;
    - `pre_create_trial`: with a time budget, create no trial that cannot finish in it; and
      leave (`Recycle`) once this process's memory grew by `recycle` MiB, so that a fresh
      one carries on (`search.processes.recycled`).

    Mixed into each of keras-tuner's tuners (below), so every tuner records alike.
    """

    def __init__(
        self,
        *args: Any,
        study: Study,
        plan: Plan,
        progress: SearchProgress,
        recycle: float = 0.0,
        started: float | None = None,
        **kw: Any,
    ):
        super().__init__(*args, **kw)
        self.study, self.plan, self.progress = study, plan, progress
        self.recycle = recycle
        self.memory_base: float | None = None  # peak MiB after this process's first trial
        self.recycled = False
        # Seconds the search ran in the processes before this one.
        self.carried = time.time() - started if started is not None else 0.0
        # On a worker of a distributed search the oracle lives in the chief, which keeps the
        # records; outcomes are then told from this process's own epochs.
        self.local = isinstance(self.oracle, kt.Oracle)
        progress.prefix = "" if self.local else f"{self.tuner_id}: "
        self.started = time.monotonic()
        self.epochs_done = 0  # in this process, for the ETA and the budget
        self.stats: dict[str, Any] = {}
        self.mark = self.started
        self.budget: SearchBudget | None = None  # set before the search: `train_trials`
        self.budget_note = ""

    def pre_create_trial(self) -> None:
        if self.grew_too_much():
            self.recycled = True
            raise Recycle
        if not self.next_trial_fits():
            # keras-tuner's own stop: the oracle creates no further trial.
            self.oracle.max_trials = len(self.oracle.trials)

    def grew_too_much(self) -> bool:
        """Whether this process's memory grew by more than `recycle` MiB since its first
        trial, with trials still to run."""
        if not self.recycle or self.memory_base is None:
            return False
        if self.local and len(self.oracle.trials) >= self.plan.trials:
            return False  # nothing left: the summary comes from this process
        return peak_memory_mib() - self.memory_base > self.recycle

    def next_trial_fits(self) -> bool:
        """Whether the next trial can end within the time budget (always, without one);
        if not, `budget_note` says so."""
        if self.budget is None:
            return True
        following = len(self.oracle.trials)  # the index of the trial the oracle creates next
        if following >= self.plan.trials:
            return True
        if self.epochs_done:  # measured here, no longer the calibration's estimate
            self.budget.epoch_seconds = (time.monotonic() - self.started) / self.epochs_done
        epochs = self.plan.trial_epochs[following] * self.plan.executions
        self.budget_note = self.budget.refusal(epochs, following, self.plan.trials) or ""
        return not self.budget_note

    def on_search_begin(self) -> None:
        super().on_search_begin()
        self.started = time.monotonic()

    def on_trial_begin(self, trial: kt.engine.trial.Trial) -> None:
        super().on_trial_begin(trial)
        self.stats = {"epochs_run": 0, "seconds": 0.0, "stopped_early": False, "epoch_seconds": []}
        self.progress.trial_started(trial)

    def on_epoch_begin(self, trial: Any, model: Any, epoch: int, logs: dict | None = None) -> None:
        if epoch == trial.hyperparameters.values.get("tuner/initial_epoch", 0):
            self.mark = time.monotonic()  # a fit begins: its first epoch carries its tracing

    def on_epoch_end(self, trial: Any, model: Any, epoch: int, logs: dict | None = None) -> None:
        # End to end, so each epoch carries the checkpoint and log writes of the one before.
        now = time.monotonic()
        self.stats["epoch_seconds"].append(round(now - self.mark, 3))
        self.stats["epochs_run"] += 1
        self.mark = now
        self.epochs_done += 1

    def run_trial(self, trial: kt.engine.trial.Trial, *args: Any, **kwargs: Any) -> list:
        started = time.monotonic()
        try:
            histories = super().run_trial(trial, *args, **kwargs)
        finally:
            self.stats["seconds"] = round(time.monotonic() - started, 2)
        first = trial.hyperparameters.values.get("tuner/initial_epoch", 0)
        self.stats["stopped_early"] = any(
            len(h.epoch) < h.params["epochs"] - first for h in histories
        )
        self.stats["parameters"] = int(histories[0].model.count_params())
        scores = [round(max(h.history[OBJECTIVE]), 6) for h in histories]
        self.stats["scores"] = scores
        write_scores(Path(self.get_trial_dir(trial.trial_id)), scores)
        log_scores(self.study.tensorboard_dir / str(trial.trial_id), scores)
        return histories

    def on_trial_end(self, trial: kt.engine.trial.Trial) -> None:
        # keras-tuner's end_trial raises once too many trials failed in a row: the trial's
        # record and line come all the same.
        try:
            super().on_trial_end(trial)
        finally:
            s = self.stats
            if s["epochs_run"]:
                images = self.hypermodel.train_size * s["epochs_run"]
                s["images_per_s"] = round(images / s["seconds"], 1) if s["seconds"] else None
                s["worker"], s["pid"] = self.tuner_id, os.getpid()
                write_stats(self.study.tuner_dir / f"trial_{trial.trial_id}", s)
            if self.memory_base is None:
                self.memory_base = peak_memory_mib()
            ended = self.oracle.trials[trial.trial_id] if self.local else trial
            self.progress.trial_ended(ended, s, self.local, self.eta())
            if self.local:
                update_csv(self.study)

    def eta(self) -> str:
        elapsed = time.monotonic() - self.started + self.carried
        remaining = self.plan.epochs_from(len(self.oracle.end_order)) if self.local else 0
        if not self.epochs_done or not remaining:
            return f"elapsed {format_duration(elapsed)}"
        eta = (time.monotonic() - self.started) / self.epochs_done * remaining
        return (
            f"elapsed {format_duration(elapsed)}, ETA {format_duration(eta)} "
            f"(at most {remaining} epoch(s) left)"
        )


class Recycle(Exception):
    """Raised before a trial when this process should hand the search to a fresh one."""


def peak_memory_mib() -> float:
    """This process's peak resident memory so far, in MiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes there, KiB here


def log_scores(trial_runs: Path, scores: list[float]) -> None:
    """Mean and standard deviation of `scores` as scalars in every TensorBoard run (one per
    execution) of a trial: each run of a session group then reports the same trial-level
    figures."""
    import tensorflow as tf

    mean = statistics.mean(scores)
    std = statistics.stdev(scores) if len(scores) > 1 else 0.0
    for run in sorted(p for p in trial_runs.glob("*") if p.is_dir()):
        writer = tf.summary.create_file_writer(str(run / "search"))
        with writer.as_default():
            tf.summary.scalar(f"{OBJECTIVE}_mean", mean, step=0)
            tf.summary.scalar(f"{OBJECTIVE}_std", std, step=0)
        writer.close()


class HyperbandTuner(DigitsTuner, kt.Hyperband):
    pass


class RandomTuner(DigitsTuner, kt.RandomSearch):
    pass


class BayesianTuner(DigitsTuner, kt.BayesianOptimization):
    pass


class GridTuner(DigitsTuner, kt.Tuner):
    """keras-tuner's GridSearch, on a grid oracle that resumes where it stopped."""

    def __init__(
        self,
        *,
        objective: Any,
        max_trials: int,
        seed: int,
        max_consecutive_failed_trials: int,
        **kw: Any,
    ):
        oracle = ResumableGridOracle(
            objective=objective,
            max_trials=max_trials,
            seed=seed,
            max_consecutive_failed_trials=max_consecutive_failed_trials,
        )
        super().__init__(oracle=oracle, **kw)


def make_tuner(
    kind: str,
    hypermodel: DigitsHyperModel,
    study: Study,
    opts: SearchOptions,
    plan: Plan,
    progress: SearchProgress,
) -> DigitsTuner:
    common = dict(
        study=study,
        plan=plan,
        progress=progress,
        recycle=opts.recycle,
        started=opts.started,
        distribution_strategy=make_strategy(opts.strategy),
        hypermodel=hypermodel,
        objective=kt.Objective(OBJECTIVE, "max"),
        seed=opts.seed,
        executions_per_trial=opts.executions,
        max_consecutive_failed_trials=opts.max_failures,
        directory=str(study.dir),
        project_name="tuner",
        overwrite=False,
    )
    if kind == "hyperband":
        tuner = HyperbandTuner(
            max_epochs=trial_epochs(hypermodel.space, opts), factor=HYPERBAND_FACTOR, **common
        )
        # keras-tuner's Hyperband takes no trial budget; its oracle honours one all the same.
        tuner.oracle.max_trials = plan.trials
        return tuner
    cls = {"random": RandomTuner, "bayesian": BayesianTuner, "grid": GridTuner}[kind]
    return cls(max_trials=plan.trials, **common)


def study_record(
    space: Space,
    opts: SearchOptions,
    dataset: data_mod.Dataset,
    split: data_mod.Split,
    command: str,
) -> dict[str, Any]:
    # The space by name, checksum and content, not by where its file lay on this machine: the
    # record travels with exports and to the workers of a distributed search.
    text = space.source
    return new_record(
        command,
        study=opts.study,
        space={
            "name": space.name,
            "sha256": hashlib.sha256(text.encode()).hexdigest(),
            "description": space.description,
            "params": space.to_dict(),
        },
        space_toml=text,
        tuner=opts.tuner,
        max_trials=opts.max_trials,
        max_epochs=trial_epochs(space, opts),
        executions=opts.executions,
        patience=opts.patience,
        data={
            "path": opts.data,  # None: the bundled MNIST
            "source": dataset.source,
            "sha256": dataset.sha256,
            "train": len(split.y_train),
            "val": len(split.y_val),
        },
        seed=opts.seed,
        strategy=opts.strategy,
    )


def check_resumable(study: Study, record: dict[str, Any]) -> dict[str, Any]:
    """The stored record, updated for this run; refuse if the study was made differently."""
    old = study.read()
    for key, part in IDENTITY.items():
        try:
            same = part(old) == part(record)
        except (KeyError, TypeError):
            raise StudyError(
                f"{study.record_path}: no valid '{key}' entry; pass --overwrite"
            ) from None
        if not same:
            raise StudyError(
                f"study '{study.name}' was made with a different {key}; rerun its original "
                f"command ({old.get('commands', ['?'])[0]}), pass --overwrite to start over, "
                "or pick another --study"
            )
    return {
        **old,
        "max_trials": record["max_trials"],
        "commands": [*old.get("commands", []), *record["commands"]],
    }


def check_trial_files(study: Study) -> None:
    """Read each trial file keras-tuner will reload: one cut short (a machine that died as
    keras-tuner wrote it; it writes in place) is named in one line, not a traceback from
    deep in its reload."""
    for path in sorted(study.tuner_dir.glob("trial_*/trial.json")):
        read_json(path)


def discard_interrupted(study: Study) -> None:
    """Drop the TensorBoard logs of trials a killed search left running: they rerun now."""
    oracle_file = study.tuner_dir / "oracle.json"
    if not oracle_file.exists():
        return
    for trial_id in read_json(oracle_file).get("ongoing_trials", {}).values():
        study.discard_curves(trial_id)


@dataclass(frozen=True)
class Prepared:
    """What every role of a search works from: the space as searched, the study, the data
    split, the study's record and the plan."""

    space: Space
    study: Study
    split: data_mod.Split
    record: dict[str, Any]
    plan: Plan


def prepare(space: Space, opts: SearchOptions, command: str) -> Prepared:
    check_tuner(space, opts.tuner)
    if opts.tuner == "hyperband":  # Hyperband owns the epochs
        space = space.with_fixed("epochs", trial_epochs(space, opts))
    dataset = data_mod.load(opts.data)
    split = data_mod.split(dataset, opts.val_size, opts.train_size, opts.seed)
    record = study_record(space, opts, dataset, split, command)
    return Prepared(space, Study(opts.study, opts.root), split, record, make_plan(space, opts))


def build_tuner(p: Prepared, opts: SearchOptions, console: Console) -> DigitsTuner:
    keras.utils.set_random_seed(opts.seed)
    hypermodel = DigitsHyperModel(
        p.space, len(p.split.y_train), trial_epochs(p.space, opts), opts.seed
    )
    progress = SearchProgress(console, p.space, p.plan)
    # keras-tuner prints "Reloading Tuner from ..." when it resumes; the header says so.
    with hypermodel.declaring(), contextlib.redirect_stdout(io.StringIO()):
        return make_tuner(opts.tuner, hypermodel, p.study, opts, p.plan, progress)


def run_search(
    space: Space,
    opts: SearchOptions,
    command: str,
    console: Console | None = None,
    role: str | None = None,
    watch: Callable[[kt.Oracle], contextlib.AbstractContextManager[list[str]]] | None = None,
) -> kt.Tuner:
    """Search `space` as `opts` says, resuming the study if it exists. Returns the tuner.

    `role` is None for a search in this process; "chief" serves the oracle to workers (the
    KERASTUNER_* variables say where) and prints the summary once they are done; "worker"
    trains the trials the chief hands out (see `search.distribute`). `watch` wraps the
    chief's serving: it yields the list of events (dead workers) the summary reports.
    """
    console = console or Console()
    p = prepare(space, opts, command)
    if role == "worker":
        return work_for_chief(p, opts, console)
    with p.study.lock():  # the chief (or a lone search) owns the study
        resuming = open_study(p.study, p.record, opts)
        tuner = build_tuner(p, opts, console)
        if opts.started is None:  # a fresh process carrying on the search says nothing new
            header(console, p.space, opts, p.plan, p.split, p.study, resuming)
            warn_space(p.space, console)
        if role == "chief":
            return serve_workers(tuner, p, opts, console, watch)
        train_trials(tuner, p, opts)
        if tuner.recycled:
            return tuner
    rows = trial_rows(p.study)
    summarize(tuner, p.space, p.plan, console, opts.top, rows, tuner.budget_note)
    return tuner


def serve_workers(
    tuner: kt.Tuner,
    p: Prepared,
    opts: SearchOptions,
    console: Console,
    watch: Callable[[kt.Oracle], contextlib.AbstractContextManager[list[str]]] | None,
) -> kt.Tuner:
    """The chief: serve the oracle until the workers have run every trial, then summarise."""
    address = f"{os.environ['KERASTUNER_ORACLE_IP']}:{os.environ['KERASTUNER_ORACLE_PORT']}"
    console.print(
        f"Chief: serving the oracle on {address}; workers join with "
        f"`digits worker --chief {address} --study {p.study.name}`"
    )
    with watch(tuner.oracle) if watch else contextlib.nullcontext([]) as events:
        tuner.search(verbose=0)  # keras-tuner serves until every trial is done
    update_csv(p.study)
    summarize(tuner, p.space, p.plan, console, opts.top, trial_rows(p.study), events=events)
    return tuner


def work_for_chief(p: Prepared, opts: SearchOptions, console: Console) -> kt.Tuner:
    """A worker: train the trials the chief hands out; the chief keeps the study."""
    check_resumable(p.study, p.record)
    tuner = build_tuner(p, opts, console)
    _pause_when_idle(tuner.oracle)
    train_trials(tuner, p, opts)
    return tuner


def train_trials(tuner: DigitsTuner, p: Prepared, opts: SearchOptions) -> None:
    """Run the tuner's trials in this process, within the time budget if there is one,
    until they are done or the process should hand over (`tuner.recycled`)."""
    if opts.time_budget is not None:
        epoch = estimate_seconds(1, p.split, calibrate(p.space, p.split))
        tuner.budget = SearchBudget(opts.time_budget - tuner.carried, epoch)
        if not tuner.next_trial_fits():  # an oracle's trial budget cannot be 0
            return
    try:
        tuner.search(
            p.split.x_train,
            p.split.y_train,
            validation_data=(p.split.x_val, p.split.y_val),
            callbacks=search_callbacks(p.study, opts),
            verbose=0,
        )
    except Recycle:
        pass
    except RuntimeError as e:  # keras-tuner: too many consecutive failed trials
        if "consecutive failures" not in str(e):
            raise
        raise StudyError(consecutive_failures(tuner)) from None


def _pause_when_idle(client: Any) -> None:
    """Make a worker pause when its chief says "no trial yet, ask again" (IDLE).

    keras-tuner's worker asks again at once: a loop of requests on the cores the other
    workers train on, for as long as a Hyperband round or the last trials take.
    """

    def create_trial(tuner_id: str) -> kt.engine.trial.Trial:
        trial = create(tuner_id)
        if trial.status == kt.engine.trial.TrialStatus.IDLE:
            time.sleep(IDLE_PAUSE)
        return trial

    create = replace_method(client, "create_trial", create_trial)


def open_study(study: Study, record: dict[str, Any], opts: SearchOptions) -> bool:
    """Start, restart (--overwrite) or resume the study; write its record. True if resuming."""
    if opts.overwrite:
        study.remove()
    resuming = study.exists()
    if resuming:
        record = check_resumable(study, record)
        check_trial_files(study)
        discard_interrupted(study)
    elif study.tuner_dir.exists():
        raise StudyError(f"{study.dir}: tuner state without study.json; pass --overwrite")
    study.write(record)
    return resuming


def search_callbacks(study: Study, opts: SearchOptions) -> list:
    """TensorBoard (keras-tuner points it at each trial's folder and adds the HParams) and
    early stopping of hopeless trials."""
    return [
        keras.callbacks.TensorBoard(str(study.tensorboard_dir), write_graph=False, profile_batch=0),
        keras.callbacks.EarlyStopping(OBJECTIVE, patience=opts.patience, mode="max"),
    ]


def consecutive_failures(tuner: kt.Tuner) -> str:
    """One line: why keras-tuner gave up after its consecutive failures."""
    failed = [t for t in tuner.oracle.trials.values() if t.status == "FAILED"]
    causes: dict[str, int] = {}
    for t in failed:
        reason = failure_reason(t.message)
        causes[reason] = causes.get(reason, 0) + 1
    listed = "; ".join(f"{n} x {reason}" for reason, n in causes.items())
    return (
        f"search stopped after {tuner.oracle.max_consecutive_failed_trials} consecutive "
        f"failed trials ({len(failed)} failed in all): {listed}"
    )
