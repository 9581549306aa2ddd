"""`digits run`: a preset's whole job in one go, every stage resumable.

A preset names a built-in space, how to search it and how to retrain its best configurations.
`run_preset` chains the stages: the search (`tune`), the retraining of the best trials
(`retrain`), their ensemble with its one test evaluation and the error analysis (`ensemble`,
`report`), and the export. The time budget counts every part of an interrupted run
(`Study.run_clock`), and the retraining gets what the search leaves of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from search import space as space_mod
from search.ensemble import ensemble_dir, evaluate
from search.export import export
from search.options import EXPORT_FORMATS, PRESETS, SearchOptions
from search.report import write_report
from search.retrain import load_study_data, plan_members, retrain
from search.study import Study
from search.tune import run_search

# Time a run keeps back from its budget for the ensemble, the test evaluation and the export.
FINISH_SECONDS = 60


@dataclass(frozen=True)
class Evaluated:
    """An ensemble evaluated once on the test set, and its error analysis."""

    evaluation: dict[str, Any]  # ensemble.EVALUATION_FILE's content
    report: dict[str, Any]  # report.write_report's summary
    folder: Path  # the study's ensemble folder


@dataclass(frozen=True)
class RunOutcome:
    evaluated: Evaluated
    export_dir: Path
    parts: list[float]  # seconds of each part of the run, this one last


def evaluate_and_report(study: Study, tta: bool = False) -> Evaluated:
    """Build and evaluate the ensemble of the study's members, write the error analysis."""
    with study.lock():
        dataset = load_study_data(study)
        _, evaluation, probs = evaluate(study, dataset, tta)
        folder = ensemble_dir(study)
        report = write_report(
            folder / "report",
            dataset.x_test,
            dataset.y_test,
            probs,
            f"study {study.name}",
            tensorboard_dir=folder / "tensorboard",
        )
    return Evaluated(evaluation, report, folder)


def run_preset(
    preset: str,
    study: Study,
    *,
    command: str,
    console: Console,
    models: Path,
    seed: int = 0,
    data: str | None = None,
    hold_out: bool = False,
    tta: bool | None = None,
    time_budget: float | None = None,
) -> RunOutcome:
    """Search, retrain, ensemble, evaluate and export `preset` into `study` (resuming).

    `tta` (test-time augmentation; default: the preset's) and `time_budget` (seconds;
    default: the preset's, covering the whole run, every part of an interrupted one
    included).
    """
    settings = PRESETS[preset]
    tta = settings.get("tta", False) if tta is None else tta
    space = space_mod.load(settings["space"])
    budget = time_budget or settings.get("time_budget")
    with study.run_clock() as parts:

        def stage(title: str) -> None:
            console.rule(f"{title} · {sum(parts()) / 60:.1f} min in")

        stage(f"1/4 search · preset {preset}")
        opts = SearchOptions(
            study=study.name, root=study.root, seed=seed, data=data, **settings["search"]
        )
        run_search(space, opts, command=command, console=console)
        stage("2/4 retrain")
        left = None if budget is None else budget - sum(parts()) - FINISH_SECONDS
        with study.lock():
            members = plan_members(study, **settings["retrain"], hold_out=hold_out)
            retrain(study, members, console, left)
        stage("3/4 ensemble and evaluate")
        evaluated = evaluate_and_report(study, tta)
        stage("4/4 export")
        path = export(study, study.name, EXPORT_FORMATS, command, models)
        return RunOutcome(evaluated, path, parts())
