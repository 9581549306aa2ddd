"""What a search will run, before it runs: its trials and epochs, and how long they take.

`make_plan` lists each planned trial's epochs (Hyperband's brackets mirrored from keras-tuner's
oracle); `calibrate` times a few training steps of the space's default configuration on this
machine, and `estimate_seconds` turns epochs into wall time. `digits search --plan` prints
them (`plan_search`) without training; `--time-budget` and the ETAs work from the same figures.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import keras_tuner as kt
from rich.console import Console
from rich.markup import escape

from search import data as data_mod
from search.budget import format_duration
from search.hypermodel import images_per_second
from search.options import SearchOptions
from search.space import Space, unbuildable
from search.study import StudyError

DEFAULT_MAX_TRIALS = 10  # random and bayesian; grid runs the whole grid, Hyperband its brackets
HYPERBAND_FACTOR = 3


@dataclass(frozen=True)
class Plan:
    """What a search will run: epochs of each planned trial, in order, each trained
    `executions` times."""

    trial_epochs: list[int]
    executions: int = 1

    @property
    def trials(self) -> int:
        return len(self.trial_epochs)

    @property
    def epochs(self) -> int:
        """Epochs trained in all, every execution counted."""
        return sum(self.trial_epochs) * self.executions

    def epochs_from(self, trial: int) -> int:
        """Epochs trained by trial number `trial` (0-based) and the ones after it."""
        return sum(self.trial_epochs[trial:]) * self.executions


def hyperband_epochs(max_epochs: int, factor: int = HYPERBAND_FACTOR) -> list[int]:
    """Epochs trained by each trial of one Hyperband iteration, in the order they run.

    Mirrors keras-tuner's HyperbandOracle: brackets from the most aggressive down, each round
    keeping the best 1/factor of the last and training them on from where they stopped.
    """
    brackets, e = 0, max_epochs
    while e >= 1:
        e, brackets = e / factor, brackets + 1
    end0 = math.ceil(1 + math.log(max_epochs, factor))

    def size(b: int, r: int) -> int:
        return math.ceil(end0 / (b + 1) * factor ** (b - r))

    def epochs(b: int, r: int) -> int:
        return math.ceil(max_epochs / factor ** (b - r))

    out = []
    for b in reversed(range(brackets)):
        for r in range(b + 1):
            out += [epochs(b, r) - (epochs(b, r - 1) if r else 0)] * size(b, r)
    return out


def make_plan(space: Space, opts: SearchOptions) -> Plan:
    epochs = trial_epochs(space, opts)
    if opts.tuner == "hyperband":
        per_trial = hyperband_epochs(epochs)
        return Plan(per_trial[: opts.max_trials] if opts.max_trials else per_trial, opts.executions)
    size = space.size()
    default = size if opts.tuner == "grid" else DEFAULT_MAX_TRIALS
    trials = opts.max_trials or default
    if size is not None:
        trials = min(trials, size)
    return Plan([epochs] * trials, opts.executions)


def trial_epochs(space: Space, opts: SearchOptions) -> int:
    """The most epochs a trial trains: the space's largest `epochs`, capped by --max-epochs."""
    most = int(space.params["epochs"].largest())
    return min(most, opts.max_epochs or most)


def check_tuner(space: Space, tuner: str) -> None:
    """The grid tuner needs a finite space (`SearchOptions` knows the tuner's name)."""
    if tuner == "grid" and space.size() is None:
        continuous = [p.name for p in space.active() if p.size() is None]
        raise StudyError(
            f"{space.path}: the grid tuner needs a finite space, but {', '.join(continuous)} "
            "is a continuous range (give it a step or a choice)"
        )


VALIDATION_COST = 1 / 3  # an evaluated image costs about a third of a trained one


def calibrate(space: Space, split: data_mod.Split) -> float:
    """Training images per second of the space's default configuration on this machine.

    The default configuration takes the first value of every choice and the lower end of
    every range, and a shape that can be built where those values make one that cannot.
    """
    config = space.register(kt.HyperParameters())
    if unbuildable(config):
        config.update(space.buildable_shape())
    return images_per_second(config, split.x_train, split.y_train)


def estimate_seconds(epochs: int, split: data_mod.Split, images_per_s: float) -> float:
    """Wall time of `epochs` epochs: training plus the validation pass after each."""
    per_epoch = (len(split.y_train) + VALIDATION_COST * len(split.y_val)) / images_per_s
    return epochs * per_epoch


def describe_plan(
    space: Space,
    opts: SearchOptions,
    plan: Plan,
    split: data_mod.Split,
    images_per_s: float,
    console: Console,
) -> None:
    """What a search will do, without training: `digits search ... --plan`."""
    size = space.size()
    console.print(
        f"Space {space.name}: {f'{size:,} configurations' if size is not None else 'continuous'}"
    )
    console.print(
        f"Tuner {opts.tuner}: {plan.trials} trials"
        + (f" x {plan.executions} executions" if plan.executions > 1 else "")
        + f", {plan.epochs} epochs in all, "
        f"on {len(split.y_train):,} training / {len(split.y_val):,} validation images"
    )
    if opts.tuner == "hyperband":
        runs: dict[int, int] = {}
        for e in plan.trial_epochs:
            runs[e] = runs.get(e, 0) + 1
        parts = ", ".join(f"{n} x {e} epoch(s)" for e, n in runs.items())
        console.print(
            f"  Hyperband (factor {HYPERBAND_FACTOR}, max {max(plan.trial_epochs)} "
            f"epochs) runs its trials as: {parts}"
        )
    total = estimate_seconds(plan.epochs, split, images_per_s)
    console.print(
        f"Calibration on this machine: {images_per_s:,.0f} training images/s for the default "
        f"configuration -> about {format_duration(total)} in all (early stopping makes it less; "
        "larger configurations more)."
    )
    if opts.time_budget:
        fit = trials_within(plan, opts.time_budget, estimate_seconds(1, split, images_per_s))
        console.print(
            f"Time budget {format_duration(opts.time_budget)}: by this estimate {fit} of "
            f"{plan.trials} trials fit; the search starts none that cannot finish in time."
        )


def trials_within(plan: Plan, seconds: float, epoch_seconds: float) -> int:
    """How many of the plan's trials, in order, end within `seconds` at `epoch_seconds`."""
    spent, fit = 0.0, 0
    for epochs in plan.trial_epochs:
        spent += epochs * plan.executions * epoch_seconds
        if spent > seconds:
            break
        fit += 1
    return fit


def plan_search(space: Space, opts: SearchOptions, console: Console) -> Plan:
    """Print what `run_search` would do and how long it would take; train nothing."""
    check_tuner(space, opts.tuner)
    if opts.tuner == "hyperband":
        space = space.with_fixed("epochs", trial_epochs(space, opts))
    split = data_mod.split(data_mod.load(opts.data), opts.val_size, opts.train_size, opts.seed)
    plan = make_plan(space, opts)
    describe_plan(space, opts, plan, split, calibrate(space, split), console)
    warn_space(space, console)
    return plan


def warn_space(space: Space, console: Console) -> None:
    """Before anything trains: combinations that cannot build, and a space with nothing to
    search (an empty file, or every key fixed)."""
    warnings = space.build_warnings()
    if not any(p.tunable for p in space.active()):
        warnings.append(
            f"{space.path}: nothing to search, every key is fixed: each trial trains the same "
            "one configuration (give a key a choice or a range to search it)"
        )
    for warning in warnings:
        console.print(f"[yellow]warning:[/] {escape(warning)}")
