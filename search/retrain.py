"""Retrain a study's best configurations from scratch on the full training data.

The K best trials (by validation accuracy, as the search recorded it) are each trained with S
seeds on train + validation, with their own schedule and augmentation. With `hold_out` they
train without the study's validation split instead, so the ensemble stage can measure on it
what retrained members do (ensemble size, test-time augmentation) without the test set; such
members are named `..._ho` and kept apart from the others. Each member lives in
`logs/<study>/retrain/<member>/`: TensorBoard curves, `member.keras` and `manifest.json`.
A member with a manifest is finished and kept; an interrupted one resumes from its last epoch
(Keras' BackupAndRestore keeps model and optimizer state in `backup/`). With `subsample`,
each member trains on its own stratified share of those images, drawn with its seed
(named `..._subNN`), as the published 15-CNN ensemble's members each drew their own 90%.

Given a time budget, each member's epochs are sized to the time left just before it starts:
the first from a few seconds of timed training steps, the rest from what the members before
them really took (`TimeBudget`).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import keras
from rich.console import Console

from search import data as data_mod
from search.budget import BUDGET_FILE, TimeBudget, recorded_rates
from search.hypermodel import (
    REPLANNABLE,
    compile_model,
    images_per_second,
    make_dataset,
    schedule_callbacks,
    steps_per_epoch,
)
from search.model import build_model, rebuild
from search.results import best_first
from search.space import completed
from search.study import Study, StudyError, atomic_path, read_json, write_atomic

RETRAIN_DIR = "retrain"  # the study's subfolder of retrained members (`digits retrain`)
MANIFEST = "manifest.json"
MODEL_FILE = "member.keras"
CLOCK_FILE = "seconds"  # training seconds so far of an unfinished member, for its manifest
HOLD_OUT_SUFFIX = "_ho"
# The percentage of the training images a member draws, as short as exact: 90, 90.5.
SUBSAMPLE_SUFFIX = "_sub{:g}"


@dataclass(frozen=True)
class Member:
    """One model to retrain: a trial's configuration with one seed."""

    name: str
    trial_id: str
    seed: int
    epochs: int
    val_accuracy: float  # the trial's score in the search
    best_epoch: int  # the epoch at which the trial peaked in the search
    config: dict[str, Any]
    hold_out: bool = False  # trained without the study's validation split
    subsample: float = 1.0  # share of the training images it draws (stratified, by its seed)


def best_trials(study: Study, top: int | None = None) -> list[dict[str, Any]]:
    """The `top` (default: all) completed trials of a study, best first, read from
    keras-tuner's records."""
    trials = [read_json(p) for p in sorted(study.tuner_dir.glob("trial_*/trial.json"))]
    done = [t for t in trials if t.get("status") == "COMPLETED" and t.get("score") is not None]
    if not done:
        raise StudyError(f"study '{study.name}' has no completed trial; run `digits search` first")
    return sorted(done, key=lambda t: best_first(t["score"], t["trial_id"]))[:top]


def plan_members(
    study: Study,
    top: int,
    seeds: int,
    epochs: int | None,
    hold_out: bool = False,
    subsample: float = 1.0,
) -> list[Member]:
    """Members for the `top` trials x `seeds` seeds, every member with a seed of its own.

    Default epochs: the epoch at which the trial's validation accuracy peaked. The schedules
    work per epoch, so on the full data the same epochs reproduce the schedule, each epoch
    with proportionally more steps.
    """
    trials = best_trials(study, top)
    return [
        m
        for rank, trial in enumerate(trials)
        for m in trial_members(study, trial, rank, seeds, epochs, hold_out, subsample)
    ]


def trial_members(
    study: Study,
    trial: dict[str, Any],
    rank: int,
    seeds: int,
    epochs: int | None,
    hold_out: bool = False,
    subsample: float = 1.0,
) -> list[Member]:
    """The `seeds` members of one trial, the `rank`-th best of its study (0: the best)."""
    # Seeds differ between studies run with different --seed, so repeated runs are independent.
    base = 1000 * int(study.read().get("seed", 0))
    # Named apart: a member drawn from a share of the images is another member than the
    # same trial and seed trained on all of them, and must not pass for it when resuming.
    suffix = (SUBSAMPLE_SUFFIX.format(100 * subsample) if subsample < 1 else "") + (
        HOLD_OUT_SUFFIX if hold_out else ""
    )
    values = trial["hyperparameters"]["values"]
    config = completed({k: v for k, v in values.items() if not k.startswith("tuner/")})
    best_epoch = int(trial["best_step"]) + 1
    # One seed per member, not per study: members sharing a seed start from the same
    # convolution kernels and see the same batches and augmentations, so they err alike
    # and their average gains little. Numbered by rank, so a larger --top keeps the members
    # already trained.
    start = base + rank * seeds
    return [
        Member(
            name=f"t{trial['trial_id']}_s{seed}{suffix}",
            trial_id=trial["trial_id"],
            seed=seed,
            epochs=epochs or best_epoch,
            val_accuracy=float(trial["score"]),
            best_epoch=best_epoch,
            config=config,
            hold_out=hold_out,
            subsample=subsample,
        )
        for seed in range(start, start + seeds)
    ]


def member_dir(study: Study, name: str, stage: str = RETRAIN_DIR) -> Path:
    return study.dir / stage / name


def load_study_data(study: Study) -> data_mod.Dataset:
    """The dataset the study searched, checked against its recorded checksum."""
    recorded = study.read()["data"]
    dataset = data_mod.load(recorded.get("path"))
    if dataset.sha256 != recorded["sha256"]:
        raise StudyError(
            f"{dataset.source}: checksum differs from the one study '{study.name}' searched"
        )
    return dataset


class EpochProgress(keras.callbacks.Callback):
    """One line per epoch: member, epoch, training metrics, ETA over all members left."""

    def __init__(self, console: Console, label: str, epochs: int, rest: list[int], clock: dict):
        super().__init__()
        self.console, self.label, self.clock = console, label, clock
        self.epochs = epochs  # this member's plan, which a time budget may change (`Replan`)
        self.rest_epochs = sum(rest)  # of the members after this one
        # Said on the line: an ETA for several members read as one member's looks 2-5x slow.
        self.scope = f"this member and {len(rest)} more" if rest else "this member"

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        self.clock["epochs"] += 1
        # From `epoch`, not a count of calls: a member resumed from its backup starts there.
        left = self.epochs - (epoch + 1) + self.rest_epochs
        elapsed = time.monotonic() - self.clock["start"]
        eta = elapsed / self.clock["epochs"] * left
        self.console.print(
            f"  {self.label} epoch {epoch + 1}/{self.epochs}: "
            f"loss {logs.get('loss', float('nan')):.4f}, accuracy {logs.get('accuracy', 0):.4f}"
            f" · ETA {eta / 60:.1f} min ({self.scope})",
        )


class Replan(keras.callbacks.Callback):
    """After each epoch of the member a time budget trains last, its epochs sized again to
    the time left at the speed it trains in this process (`TimeBudget.replan`): `followers`
    (its schedule, its progress lines) take the new plan, and training stops where it ends.
    """

    def __init__(self, budget: TimeBudget, member: Member, followers: list[Any], console: Console):
        super().__init__()
        self.budget, self.member, self.followers = budget, member, followers
        self.console = console
        self.first: int | None = None  # the first epoch of this process (a resume's later)

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.started = time.monotonic()

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.first = epoch if self.first is None else self.first

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        done = epoch + 1
        seconds = (time.monotonic() - self.started) / (done - self.first)
        planned = self.budget.epochs[self.member.name]  # before this epoch's plan
        epochs = self.budget.replan(self.member, done, seconds)
        if epochs != planned:
            self.console.print(
                f"Time budget: an epoch of {self.member.name} takes {seconds:.0f}s here -> "
                f"{epochs} epochs instead of {planned}"
            )
        for follower in self.followers:
            follower.epochs = epochs
        self.model.stop_training = done >= epochs


class Stopwatch(keras.callbacks.Callback):
    """A member's training seconds across resumes, kept in `path` after every epoch: a member
    killed and resumed from its backup reports the time of all its epochs, not of the last part.
    """

    def __init__(self, path: Path):
        super().__init__()
        self.path = path
        self.before = float(path.read_text()) if path.exists() else 0.0
        self.started = time.monotonic()  # made just before `fit`, which it times

    @property
    def seconds(self) -> float:
        return self.before + time.monotonic() - self.started

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        write_atomic(self.path, f"{self.seconds:.1f}\n")


def validation_split(study: Study, dataset: data_mod.Dataset) -> data_mod.Split:
    """The study's validation split, and every other training image beside it."""
    record = study.read()
    return data_mod.split(dataset, record["data"]["val"], seed=record.get("seed", 0))


def mixed_calibration(members: list[Member]) -> str | None:
    """Why an ensemble of `members` would be lopsided, or None.

    The ensemble averages probabilities. A member trained without label smoothing puts ~1.0
    on its answer, a smoothed one ~0.9, so where they disagree the unsmoothed member wins,
    right or wrong (BENCHMARKS.md, experiments).
    """
    values = sorted({m.config.get("label_smoothing", 0.0) for m in members})
    if len(values) < 2:
        return None
    return (
        f"members mix label_smoothing {', '.join(map(str, values))}: the ensemble averages "
        "probabilities, and the least smoothed members outvote the rest; give the space one value"
    )


def calibrate(members: list[Member], x: Any, y: Any, known: dict[str, float]) -> dict[str, float]:
    """Training images per second of each member's configuration on this machine: `known`
    (measured by an earlier part of the run), the others from a few seconds of timed steps.
    The calibration a time budget plans the first members with."""
    rates = dict(known)
    for m in members:
        if m.trial_id not in rates:
            rates[m.trial_id] = round(images_per_second(m.config, x, y), 1)
    return rates


def retrain(
    study: Study,
    members: list[Member],
    console: Console,
    time_budget: float | None = None,
    stage: str = RETRAIN_DIR,
) -> list[Path]:
    """Train every unfinished member into `study.dir / stage`; return the folders of the
    finished ones.

    With `time_budget` (seconds from now), each member's epochs are sized to fit it
    (`TimeBudget`).
    """
    warning = mixed_calibration(members)
    if warning:
        console.print(f"[yellow]Warning:[/] {warning}")
    x, y = training_images(study, any(m.hold_out for m in members), console)
    todo = [m for m in members if not (member_dir(study, m.name, stage) / MANIFEST).exists()]
    budget = None
    if todo and time_budget is not None:
        path = study.dir / RETRAIN_DIR / BUDGET_FILE
        rates = calibrate(todo, x, y, recorded_rates(path))
        budget = TimeBudget(path, todo, len(y), time_budget, rates)
    shares = ", ".join(sorted({f"{m.subsample:.0%}" for m in members if m.subsample < 1}))
    images = f"each on its own {shares} of {len(y):,} images" if shares else f"on {len(y):,} images"
    console.print(
        f"Retraining {len(members)} members of study {study.name}, {images} "
        f"({len(members) - len(todo)} already done)"
    )
    clock = {"start": time.monotonic(), "epochs": 0}
    for i, member in enumerate(todo, 1):
        label = f"[{i}/{len(todo)}] {member.name}"
        if budget:
            member = budget.size(member, todo[i:], console)
            if not member.epochs:
                console.print(f"{label}: left out by the time budget")
                continue
        console.print(
            f"{label}: trial {member.trial_id} (val_accuracy {member.val_accuracy:.4f} "
            f"in the search), seed {member.seed}, {member.epochs} epochs"
            + (f", on {member.subsample:.0%} of the images" if member.subsample < 1 else "")
        )
        # Under a budget, the ETA assumes members not yet sized get as many epochs as this one.
        rest = [budget.planned(m, member.epochs) if budget else m.epochs for m in todo[i:]]
        rest = [epochs for epochs in rest if epochs]  # not those left out
        before, started = clock["epochs"], time.monotonic()
        progress = EpochProgress(console, label, member.epochs, rest, clock)
        train_member(study, member, x, y, progress, stage, budget)
        if budget:
            budget.trained(member, clock["epochs"] - before, time.monotonic() - started)
    return [
        member_dir(study, m.name, stage)
        for m in members
        if (member_dir(study, m.name, stage) / MANIFEST).exists()
    ]


def training_images(study: Study, hold_out: bool, console: Console) -> tuple[Any, Any]:
    """Train + validation images (every choice is made), or with `hold_out` all but the
    study's validation split."""
    dataset = load_study_data(study)
    if not hold_out:
        return dataset.x_train, dataset.y_train
    split = validation_split(study, dataset)
    console.print(f"Holding out the study's {len(split.y_val):,} validation images")
    return split.x_train, split.y_train


def train_member(
    study: Study,
    member: Member,
    x: Any,
    y: Any,
    progress: EpochProgress,
    stage: str = RETRAIN_DIR,
    budget: TimeBudget | None = None,
) -> None:
    """Train `member` on `x`, `y` (its own share of them, if it subsamples) and save it.

    The member `budget` trains last keeps its plan open (`Replan`) if its schedule allows."""
    folder = member_dir(study, member.name, stage)
    folder.mkdir(parents=True, exist_ok=True)
    size = round(member.subsample * len(y))
    if size < len(y):  # a share that rounds to every image (0.99999 of 60,000) draws them all
        drawn, _ = data_mod.stratified_indices(y, size, member.seed)
        x, y = x[drawn], y[drawn]
    keras.utils.set_random_seed(member.seed)
    config = member.config
    model = build_model(config, name=member.name, fused=True)
    compile_model(model, config, steps_per_epoch(len(y), config["batch_size"]), member.epochs)
    clock = Stopwatch(folder / CLOCK_FILE)
    schedule = schedule_callbacks(config, member.epochs)
    callbacks = [
        keras.callbacks.BackupAndRestore(str(folder / "backup")),
        clock,  # after the backup: the seconds it keeps are those of the epochs kept
        keras.callbacks.TensorBoard(str(folder), write_graph=False, profile_batch=0),
        *schedule,
    ]
    open_plan = budget is not None and budget.last == member.name
    open_plan = open_plan and config["schedule"] in REPLANNABLE
    if open_plan:
        callbacks.append(Replan(budget, member, [progress, *schedule], console=progress.console))
    history = model.fit(
        make_dataset(x, y, config["batch_size"], config, seed=member.seed),
        epochs=budget.caps[member.name] if open_plan else member.epochs,
        shuffle=False,  # `make_dataset` shuffles
        callbacks=[*callbacks, progress],
        verbose=0,
    )
    if open_plan:
        member = replace(member, epochs=budget.epochs[member.name])  # as the plan ended
    seconds = clock.seconds
    # Saved with standard layers only, so the file loads without this package.
    with atomic_path(folder / MODEL_FILE) as tmp:
        rebuild(model, config).save(tmp)
    final = {k: float(v[-1]) for k, v in history.history.items() if v}
    manifest = {
        **asdict(member),
        "train_images": len(y),
        "final_metrics": final,
        "seconds": round(seconds, 1),
        "parameters": int(model.count_params()),
    }
    write_atomic(folder / MANIFEST, json.dumps(manifest, indent=2) + "\n")
    clock.path.unlink(missing_ok=True)


def member_files(study: Study, stage: str = RETRAIN_DIR) -> list[tuple[dict[str, Any], Path]]:
    """(manifest, model path) of every finished member in `study.dir / stage`, by seed (none
    if the folder is missing or holds only unfinished ones)."""
    found = []
    for manifest in (study.dir / stage).glob(f"*/{MANIFEST}"):
        model = manifest.parent / MODEL_FILE
        if not model.exists():
            raise StudyError(f"{model}: missing; delete {manifest.parent} and retrain")
        found.append((read_json(manifest), model))
    return sorted(found, key=lambda item: item[0]["seed"])


def finished_members(study: Study, stage: str = RETRAIN_DIR) -> list[tuple[dict[str, Any], Path]]:
    """The members of one ensemble: `member_files`, in the order `plan_members` plans them
    (by seed, which numbers members by their trial's rank; names sort t0_s10 before t0_s2),
    all trained with --hold-out or all without."""
    folder = study.dir / stage
    found = member_files(study, stage)
    if not found:
        # Each stage's folder is named after the command that fills it.
        raise StudyError(f"study '{study.name}' has no members in {folder}/; run `digits {stage}`")
    if len({m.get("hold_out", False) for m, _ in found}) > 1:
        raise StudyError(
            f"{folder}: members trained with and without --hold-out (names "
            f"ending {HOLD_OUT_SUFFIX}) do not make one ensemble; delete one kind"
        )
    return found
