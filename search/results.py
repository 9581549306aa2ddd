"""Every trial of a study as one table row, from the files in the study folder.

keras-tuner keeps each trial in `tuner/trial_<id>/trial.json` (hyperparameters, status, score,
best step, failure traceback); the search adds `stats.json` beside it (epochs run, wall time,
parameter count, images per second, early stop). This module joins them, with no TensorFlow,
so `digits results` answers at once, and keeps `trials.csv` in the study folder up to date.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from search.study import Study, read_json, write_atomic

STATS_FILE = "stats.json"
CSV_FILE = "trials.csv"
FIELDS = (
    "trial",
    "status",
    "val_accuracy",
    "best_epoch",
    "epochs_run",
    "seconds",
    "parameters",
    "images_per_s",
    "reason",
)


def failure_reason(message: str | None) -> str:
    """The last line of a traceback keras-tuner stored, without the exception's class path."""
    lines = [ln for ln in (message or "").strip().splitlines() if ln.strip()]
    return lines[-1].split("FailedTrialError: ")[-1] if lines else "unknown error"


def write_stats(trial_dir: Path, stats: dict[str, Any]) -> None:
    write_atomic(trial_dir / STATS_FILE, json.dumps(stats, indent=1) + "\n")


def trial_rows(study: Study) -> list[dict[str, Any]]:
    """One dict per trial: FIELDS, then its hyperparameters; best completed trials first."""
    rows = []
    for path in sorted(study.tuner_dir.glob("trial_*/trial.json")):
        trial = read_json(path)
        stats_path = path.parent / STATS_FILE
        stats = read_json(stats_path) if stats_path.exists() else {}
        status = trial.get("status", "?")
        completed = status == "COMPLETED" and trial.get("score") is not None
        row = {
            "trial": trial["trial_id"],
            "status": (
                ("stopped early" if stats.get("stopped_early") else "completed")
                if completed
                else "failed"
                if status in ("FAILED", "INVALID")
                else "running"
                if status == "RUNNING"
                else status.lower()
            ),
            "val_accuracy": trial.get("score") if completed else None,
            "best_epoch": trial.get("best_step", 0) + 1 if completed else None,
            "epochs_run": stats.get("epochs_run"),
            "seconds": stats.get("seconds"),
            "parameters": stats.get("parameters"),
            "images_per_s": stats.get("images_per_s"),
            "reason": failure_reason(trial.get("message"))
            if status in ("FAILED", "INVALID")
            else "",
        }
        values = trial.get("hyperparameters", {}).get("values", {})
        row.update({k: v for k, v in values.items() if not k.startswith("tuner/")})
        rows.append(row)
    return sorted(
        rows, key=lambda r: (r["val_accuracy"] is None, -(r["val_accuracy"] or 0), r["trial"])
    )


def columns(rows: list[dict[str, Any]]) -> list[str]:
    """FIELDS, then every hyperparameter in the order trials first name them."""
    names = list(FIELDS)
    for row in rows:
        names += [k for k in row if k not in names]
    return names


def to_csv(rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns(rows), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def update_csv(study: Study) -> Path:
    """Rewrite `trials.csv` of the study (atomically) and return its path."""
    path = study.dir / CSV_FILE
    write_atomic(path, to_csv(trial_rows(study)))
    return path
