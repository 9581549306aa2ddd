"""Time budgets: how a search and a retraining fit the time they are given, and durations.

`SearchBudget` starts no trial the time left cannot finish; `TimeBudget` sizes each retrained
member's epochs to the time left as it starts. Both plan from a calibration their caller
measures first (a few seconds of timed training steps: `plan.calibrate`,
`retrain.calibrate`), then from what really ran. `parse_duration` reads what `--time-budget`
takes (`45m`, `2h`, `1h30m`, `90s`, plain seconds, and `1h30`, where a number after hours
counts minutes, as on a clock); `format_duration` prints seconds the same way.
"""

from __future__ import annotations

import json
import re
import statistics
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from rich.console import Console

from search.study import read_json, write_atomic

UNITS = {"h": 3600, "m": 60, "s": 1}
_DURATION = re.compile(
    r"(?:(?P<h>\d+(?:\.\d+)?)h)?(?:(?P<m>\d+(?:\.\d+)?)m)?(?:(?P<s>\d+(?:\.\d+)?)s?)?"
)


def parse_duration(text: str) -> float:
    """'45m', '2h', '1h30m', '1h30' (90 minutes), '90s' or plain seconds -> seconds.

    Raises:
        ValueError: not a duration, or not a positive one.
    """
    clean = text.strip().lower()
    # A bare number after hours is minutes: "1h30" is what "1h30m" says.
    if re.fullmatch(r"\d+(?:\.\d+)?h\d+(?:\.\d+)?", clean):
        clean += "m"
    parts = _DURATION.fullmatch(clean)
    if not clean or parts is None:
        raise ValueError(f"{text!r} is not a duration like 45m, 2h or 1h30m")
    seconds = sum(float(v) * UNITS[k] for k, v in parts.groupdict().items() if v)
    if seconds <= 0:
        raise ValueError(f"{text!r}: a duration must be positive")
    return seconds


def format_duration(seconds: float) -> str:
    """Seconds as '0.4s', '42s', '3m07s' or '1h30m'."""
    if seconds < 1:
        return f"{seconds:.1f}s"
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class SearchBudget:
    """A search's time budget: no trial starts that the time left cannot finish.

    An epoch's seconds come from the calibration until the search has measured its own.
    """

    def __init__(self, seconds: float, epoch_seconds: float):
        self.deadline = time.monotonic() + seconds
        self.epoch_seconds = epoch_seconds

    def refusal(self, epochs: int, done: int, planned: int) -> str | None:
        """None if `epochs` more fit in the time left; else why the search stops after
        `done` of its `planned` trials."""
        need, left = self.epoch_seconds * epochs, self.deadline - time.monotonic()
        if need <= left:
            return None
        return (
            f"[yellow]Time budget:[/] the next trial needs about {format_duration(need)}, "
            f"{format_duration(max(left, 0))} is left: stopped after {done} of {planned} "
            "trials. Rerun with a larger --time-budget to continue."
        )


BUDGET_FILE = "budget.json"  # a retraining's member sizes and calibration, in retrain/
# Where no later member can make up for a plan's error, epochs are planned for this share
# of the time left: until a member has trained (the calibration samples a few seconds, and a
# real fit adds tracing, checkpoints and logs), and for the last member (the VMs' speed
# swings; its plan is made again after each epoch, `replan`, but a cosine curve keeps it).
BUDGET_MARGIN = 0.9
# Where the time left fits fewer epochs than this per member, fewer members train, each
# longer: on the quick preset's configurations one member of 8 epochs erred less than two of
# 4 averaged, one of 12 less than two of 6, and one of 24 less than two of 12 (16 filters
# first), while two of 9 erred about as often as one of 16, and two of 16 as one of 32
# (BENCHMARKS.md, experiments): from about 12 epochs each, two do no worse than one.
MIN_EPOCHS = 12


def recorded_rates(path: Path) -> dict[str, float]:
    """The calibration an earlier part of an interrupted retraining recorded in `path`."""
    return read_json(path).get("images_per_s", {}) if path.exists() else {}


class TimeBudget:
    """Sizes each member's epochs to the time left, just before the member starts.

    The first sizes come from a few seconds of timed training steps of each configuration;
    a real fit runs slower (tracing, checkpoints, logs, and speed swings of 0.8x and less on
    shared 2-core machines). So every member
    after the first is sized from the time the members before it really took. A member that
    has begun keeps its epochs (its schedule depends on them): they are recorded in
    `retrain/budget.json`, so a resumed run trains on with the schedule it started. Where
    the time left would give each member fewer than `MIN_EPOCHS`, the last ranked are left
    out (recorded with 0 epochs) until the rest get that many.

    The last member's plan stays open: after each of its epochs, `replan` sizes it again to
    the time left at the speed it really trains, and its schedule follows (`EpochDecay`; a
    cosine curve is fixed over its steps when training starts, so it keeps its plan). The
    run then ends near its budget, not a margin and a calibration's error before it.

    The configurations of one space mostly train at about one speed, and a calibration of a
    few seconds can be far off (one read 1.5x its configuration's real speed, and as the last
    member, with nothing after it to make up the difference, ran 10 minutes past the
    budget; tests/test_retrain.py replays it). So no member is planned faster than the
    median calibration, and the last one no faster than the slowest member trained before
    it, within `BUDGET_MARGIN` of the time left. Planning too slow leaves minutes unused;
    too fast breaks the budget.

    Args:
        path: where the sizes are recorded (`retrain/budget.json`).
        members: the unfinished members.
        images: the training images a member draws from (an epoch's size).
        seconds: the time, from now, every unfinished member has to fit in.
        rates: training images per second of each member's configuration (`calibrate`).
    """

    def __init__(
        self,
        path: Path,
        members: list[Any],
        images: int,
        seconds: float,
        rates: dict[str, float],
    ):
        self.path = path
        self.deadline = time.monotonic() + seconds
        self.images = images
        recorded = read_json(path) if path.exists() else {}
        self.epochs: dict[str, int] = recorded.get("epochs", {})
        self.rates = rates
        self.record = {
            "seconds": round(seconds),
            "at_most": max(m.epochs for m in members),
            "min_epochs": MIN_EPOCHS,
        }
        # Seconds trained in this process, and what the calibration said they would take.
        self.taken = self.expected = 0.0
        self.caps = {m.name: m.epochs for m in members}  # the most each may train
        self.last: str | None = None  # the member planned to train last, once sized
        self.last_plans: list[int] = recorded.get("last_plans", [])  # its epochs, each plan
        # Images per second of the members trained in this process, as they really trained.
        self.speeds: list[float] = []

    def slowdown(self) -> float:
        """Measured time over calibrated time (before any measurement: 1)."""
        return self.taken / self.expected if self.expected else 1.0

    def epoch_seconds(self, members: list[Any]) -> float:
        """Calibrated seconds of one epoch of every member in `members`."""
        return sum(self.images * m.subsample / self.rates[m.trial_id] for m in members)

    def planned_seconds(self, members: list[Any], last: bool) -> float:
        """Seconds one epoch of every member in `members` is planned to take here.

        Each at its calibrated speed but no faster than the median calibration, times the
        slowdown; with `last` (one member, trained last), no faster than the slowest so far.
        """
        median, slowdown = statistics.median(self.rates.values()), self.slowdown()
        slowest = min(self.speeds, default=float("inf"))
        seconds = 0.0
        for m in members:
            rate = min(self.rates[m.trial_id], median) / slowdown
            seconds += self.images * m.subsample / (min(rate, slowest) if last else rate)
        return seconds

    def size(self, member: Any, rest: list[Any], console: Console) -> Any:
        """`member` with the epochs that let it and `rest` (to train after it) fit alike."""
        rest = [m for m in rest if self.epochs.get(m.name) != 0]
        if member.name not in self.epochs:
            left = self.deadline - time.monotonic()
            left_out: list[str] = []
            while True:
                per_epoch = self.planned_seconds([member, *rest], last=not rest)
                # Nothing makes up for a plan's error before any member has trained, or after
                # the last member.
                margin = 1 if rest and self.expected else BUDGET_MARGIN
                fits = int(left * margin / per_epoch)
                if not rest or fits >= min(MIN_EPOCHS, member.epochs):
                    break
                # Fewer members rather than too short ones: the last ranked are left out.
                left_out.insert(0, rest.pop().name)
                self.epochs[left_out[0]] = 0
            self.epochs[member.name] = max(1, min(fits, member.epochs))
            if not rest:
                self.last_plans = [self.epochs[member.name]]
            self.save()
            share = "" if margin == 1 else f", planned to use {margin:.0%} of it"
            ratio = per_epoch / self.epoch_seconds([member, *rest])
            console.print(
                f"Time budget: {left / 60:.1f} min left for {1 + len(rest)} member(s){share}; "
                f"an epoch of them takes about {per_epoch / 60:.1f} min here ({ratio:.2f}x "
                f"the calibrated time) -> {self.epochs[member.name]} epochs for {member.name}"
                + (
                    f"; {', '.join(left_out)} left out: with them, each member would get "
                    f"fewer than {MIN_EPOCHS} epochs"
                    if left_out
                    else ""
                )
            )
            if fits < 1:
                console.print("[yellow]Warning:[/] not even one epoch fits; training one anyway")
        if not rest:
            self.last = member.name
        return replace(member, epochs=self.epochs[member.name])

    def save(self) -> None:
        record = {**self.record, "images_per_s": self.rates, "epochs": self.epochs}
        if self.last_plans:
            record["last_plans"] = self.last_plans
        write_atomic(self.path, json.dumps(record, indent=1) + "\n")

    def replan(self, member: Any, done: int, epoch_seconds: float) -> int:
        """`member`'s epochs after `done` of them, each taking `epoch_seconds` here.

        The last member gets as many as the time left fits at that speed (no margin: the
        plan is made again after every epoch), between `done` (stop now) and its cap; the
        others keep theirs, which the members after them are sized around.
        """
        if member.name != self.last:
            return self.epochs[member.name]
        left = self.deadline - time.monotonic()
        fits = done + int(max(left, 0) / epoch_seconds)
        epochs = max(done, min(fits, self.caps[member.name]))
        if epochs != self.epochs[member.name]:
            self.epochs[member.name] = epochs
            self.last_plans.append(epochs)
            self.save()
        return epochs

    def planned(self, member: Any, guess: int) -> int:
        """`member`'s epochs if sized already, else `guess` (at most its own), for ETAs."""
        return self.epochs.get(member.name, min(member.epochs, guess))

    def trained(self, member: Any, epochs: int, seconds: float) -> None:
        """Count `epochs` of `member` that took `seconds`, for the next members' sizes."""
        self.taken += seconds
        self.expected += epochs * self.epoch_seconds([member])
        if epochs and seconds > 0:
            self.speeds.append(epochs * self.images * member.subsample / seconds)
