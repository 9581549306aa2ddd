"""What a search prints: its header, a line as each trial starts and ends, and the summary.

`SearchProgress` only reports (the tuner calls it from keras-tuner's hooks); `summarize` reads
the oracle's records, the source of truth, so a resumed search reports the same way. The
summary says whether the best trials stand out from seed noise and warns of best values at a
range's edge, unless the trials within noise of the best disagree there.
"""

from __future__ import annotations

import statistics
from typing import Any

import keras_tuner as kt
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from search import data as data_mod
from search.budget import format_duration
from search.options import OBJECTIVE, SearchOptions
from search.plan import Plan
from search.results import best_first, failure_reason, format_score, noise_line, seed_noise
from search.space import Space
from search.study import Study


def header(
    console: Console,
    space: Space,
    opts: SearchOptions,
    plan: Plan,
    split: data_mod.Split,
    study: Study,
    resuming: bool,
) -> None:
    size = space.size()
    configs = f"{size:,} configurations" if size is not None else "continuous"
    verb = "Resuming" if resuming else "Starting"
    console.print(
        f"[bold]{verb} study {opts.study}[/] in {study.dir}/ · space {space.name} ({configs}) · "
        f"{opts.tuner} · {plan.trials} trials, {plan.epochs} epochs planned · "
        f"train {len(split.y_train):,} / validation {len(split.y_val):,} images",
        highlight=False,
    )


class SearchProgress:
    """Prints one line as each trial starts and one as it ends, with an ETA; only reports.

    `prefix` starts every line: a worker of a distributed search sets it to its id.
    """

    def __init__(self, console: Console, space: Space, plan: Plan):
        self.console, self.space, self.plan = console, space, plan
        self.prefix = ""

    def trial_started(self, trial: kt.engine.trial.Trial) -> None:
        values = trial.hyperparameters.values
        shown = ", ".join(
            f"{k}={_fmt(v)}"
            for k, v in values.items()
            if k in self.space.params and self.space.params[k].tunable
        )
        extra = ""
        if "tuner/initial_epoch" in values:
            extra = f" · epochs {values['tuner/initial_epoch'] + 1}-{values['tuner/epochs']}"
        number = int(trial.trial_id) + 1  # keras-tuner numbers trials in creation order
        self.console.print(
            f"{self.prefix}Trial {number}/{self.plan.trials} "
            f"[dim](id {trial.trial_id}{extra})[/]: {shown}",
            highlight=False,
        )

    def trial_ended(
        self, trial: kt.engine.trial.Trial, stats: dict[str, Any], scored: bool, eta: str
    ) -> None:
        """`scored`: the trial carries the oracle's score (not so on a worker, where the
        mean of its executions' scores stands in)."""
        trained = ""  # a trial that failed before training has no time or epochs
        if stats["epochs_run"]:
            trained = f", {stats['epochs_run']} epoch(s) in {format_duration(stats['seconds'])}"
            trained += ", stopped early" if stats["stopped_early"] else ""
        if trial.status == "COMPLETED" and scored:
            outcome = (
                f"[green]{OBJECTIVE} {trial.score:.4f}[/] "
                f"(best at epoch {trial.best_step + 1}{trained})"
            )
        elif trial.status == "COMPLETED":
            outcome = (
                f"[green]{OBJECTIVE} {statistics.mean(stats['scores']):.4f}[/] ({trained[2:]})"
            )
        else:
            outcome = f"[red]failed[/]: {escape(failure_reason(trial.message))}"
        line = f"  {self.prefix}trial {trial.trial_id} {outcome} · {eta}"
        self.console.print(line, highlight=False)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)


def edge_warnings(space: Space, tied: list[dict[str, Any]]) -> list[str]:
    """Best values at the edge of their range: the optimum may lie outside the space.

    `tied` holds the values of the best trial, then of every trial within seed noise of it.
    An edge is named only where they all sit on it; where they part, that is said instead,
    since noise alone may have put the best there.
    """
    warnings = []
    best = tied[0]
    for p in space.active():
        edges = p.edges()
        if edges is None or p.name not in best:
            continue
        side = (
            "lower" if best[p.name] == edges[0] else "upper" if best[p.name] == edges[1] else None
        )
        if side is None:
            continue
        where = f"best {p.name}={_fmt(best[p.name])} sits at the {side} edge of {p.describe()}"
        seen = sorted({v.get(p.name) for v in tied}, key=str)
        if len(seen) > 1:
            warnings.append(
                f"{where}, but the trials within seed noise of it take "
                f"{', '.join(map(_fmt, seen))}: no sign yet that the range is too narrow"
            )
        else:
            alike = (
                f" (as do all {len(tied)} trials within seed noise of it)" if len(tied) > 1 else ""
            )
            warnings.append(f"{where}{alike}: consider widening the space")
    return warnings


def summarize(
    tuner: kt.Tuner,
    space: Space,
    plan: Plan,
    console: Console,
    top: int,
    rows: list[dict[str, Any]],
    budget_note: str = "",
    events: list[str] | None = None,
) -> None:
    """A table of the best trials (one column each, mean ± seed spread), failures, what
    happened to workers, whether the best stand out from seed noise, and edge warnings.

    `rows`: the study's trials as `results.trial_rows` reads them (with each trial's spread).
    """
    oracle = tuner.oracle
    done = completed_trials(tuner)
    failed = [t for t in oracle.trials.values() if t.status == "FAILED"]
    console.print(
        f"\n[bold]{len(done)} trials completed[/], {len(failed)} failed, "
        f"{len(oracle.trials)} of {plan.trials} planned.",
        highlight=False,
    )
    if budget_note:
        console.print(budget_note)
    elif len(oracle.trials) < plan.trials and not oracle.ongoing_trials:
        console.print(
            f"The tuner found no new configurations to try after {len(oracle.trials)} "
            "trials: the space is exhausted for it."
        )
    for event in events or []:
        console.print(f"  {escape(event)}", highlight=False)
    for t in failed:
        console.print(f"  trial {t.trial_id} failed: {escape(failure_reason(t.message))}")
    if failed:
        console.print(f"  (tracebacks: {tuner.project_dir}/trial_<id>/trial.json)")
    if not done:
        return
    best = done[:top]
    std = {r["trial"]: r["val_std"] for r in rows}
    table = Table(title=f"Best {len(best)} trials by {OBJECTIVE}", title_justify="left")
    table.add_column("", style="bold")
    for rank, t in enumerate(best, 1):
        table.add_column(f"#{rank} {t.trial_id}", justify="right")
    table.add_row(OBJECTIVE, *(format_score(t.score, std.get(t.trial_id)) for t in best))
    table.add_row("best epoch", *(str(t.best_step + 1) for t in best))
    for p in space.active():
        if p.tunable:
            table.add_row(p.name, *(_fmt(t.hyperparameters.values.get(p.name, "-")) for t in best))
    console.print(table)
    noise = seed_noise(rows)
    console.print(noise_line(noise), highlight=False)
    within = set(noise["within"]) if noise else {done[0].trial_id}
    tied = [t.hyperparameters.values for t in done if t.trial_id in within]
    for warning in edge_warnings(space, tied):
        console.print(f"[yellow]warning:[/] {warning}", highlight=False)


def completed_trials(tuner: kt.Tuner) -> list[kt.engine.trial.Trial]:
    """Completed trials, best first (keras-tuner pads its own list with failed ones)."""
    done = [t for t in tuner.oracle.trials.values() if t.status == "COMPLETED"]
    return sorted(done, key=lambda t: best_first(t.score, t.trial_id))
