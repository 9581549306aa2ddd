"""Every trial of a study as one table row, from the files in the study folder.

keras-tuner keeps each trial in `tuner/trial_<id>/trial.json` (hyperparameters, status, score,
best step, failure traceback); the search adds `stats.json` beside it (epochs run, wall time,
parameter count, images per second, early stop) and `scores.json` (the score of each
execution: keras-tuner keeps only their mean). `digits fidelity` adds `fidelity.json` to the
study. This module joins them, with no TensorFlow, so `digits results` answers at once, and
keeps `trials.csv` in the study folder up to date.
"""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
from pathlib import Path
from typing import Any

from search.study import Study, StudyError, read_json, write_atomic

STATS_FILE = "stats.json"
SCORES_FILE = "scores.json"
FIDELITY_FILE = "fidelity.json"
CSV_FILE = "trials.csv"
# Two trials lie within seed noise of each other when their mean scores differ by less than
# this many standard errors of the difference (about a 95% two-sided test).
NOISE_SE = 2.0
DIFFER_P = 0.05  # configurations at full fidelity differ beyond seed noise below it
FIELDS = (
    "trial",
    "status",
    "val_accuracy",  # the mean over executions: keras-tuner's score
    "val_std",  # standard deviation over executions (seeds); None for one execution
    "executions",
    "val_scores",  # each execution's score
    "full_val_accuracy",  # at full fidelity (`digits fidelity`), mean over its seeds
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


def write_scores(trial_dir: Path, scores: list[float]) -> None:
    write_atomic(trial_dir / SCORES_FILE, json.dumps({"val_accuracy": scores}) + "\n")


FIDELITY_KEYS = (
    "configurations",
    "epochs",
    "seeds",
    "train_images",
    "spearman",
    "spearman_95",
    "spearman_chance",
    "kendall",
    "kendall_95",
    "pick",
    "best_at_full_fidelity",
    "regret_errors",
    "seed_spread_errors",
    "regret_within_seed_spread",
)


def read_fidelity(study: Study) -> dict[str, Any] | None:
    """The study's fidelity figures (`digits fidelity`), or None if never measured."""
    path = study.dir / FIDELITY_FILE
    if not path.exists():
        return None
    result = read_json(path)
    missing = [k for k in FIDELITY_KEYS if k not in result]
    if missing:
        raise StudyError(f"{path}: no {', '.join(missing)}; rerun `digits fidelity` to rewrite it")
    return result


def best_first(score: float | None, trial_id: str) -> tuple:
    """Sort key of trials: the highest score first, ties and unscored trials in trial order
    ("2" before "10"), so the summary, `digits results`, retrain and fidelity name one pick."""
    return (score is None, -(score or 0.0), len(trial_id), trial_id)


def _read_if_exists(path: Path) -> dict[str, Any]:
    return read_json(path) if path.exists() else {}


def trial_rows(study: Study) -> list[dict[str, Any]]:
    """One dict per trial: FIELDS, then its hyperparameters; best completed trials first."""
    fidelity = read_fidelity(study) or {"configurations": []}
    full = {c["trial"]: c["full_val_accuracy"] for c in fidelity["configurations"]}
    rows = []
    for path in sorted(study.tuner_dir.glob("trial_*/trial.json")):
        trial = read_json(path)
        stats = _read_if_exists(path.parent / STATS_FILE)
        scores = _read_if_exists(path.parent / SCORES_FILE).get("val_accuracy", [])
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
            "val_std": statistics.stdev(scores) if completed and len(scores) > 1 else None,
            "executions": len(scores) if completed and scores else None,
            "val_scores": scores if completed else [],
            "full_val_accuracy": full.get(trial["trial_id"]),
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
    return sorted(rows, key=lambda r: best_first(r["val_accuracy"], r["trial"]))


def columns(rows: list[dict[str, Any]]) -> list[str]:
    """FIELDS, then every hyperparameter in the order trials first name them."""
    names = list(FIELDS)
    for row in rows:
        names += [k for k in row if k not in names]
    return names


def to_csv(rows: list[dict[str, Any]]) -> str:
    """The rows as CSV; a list (each execution's score) as its values separated by spaces."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns(rows), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(
            {k: " ".join(map(str, v)) if isinstance(v, list) else v for k, v in row.items()}
        )
    return out.getvalue()


def format_score(mean: float, std: float | None) -> str:
    """A trial's score as shown: its mean, and its seed spread where measured."""
    return f"{mean:.4f}" + ("" if std is None else f" ± {std:.4f}")


def seed_noise(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """How far apart seeds put one configuration, and which trials the best cannot be told
    from; None where no trial ran more than one execution.

    The spread is the standard deviation between executions pooled over every completed
    trial with two or more (one trial's two or three executions say little on their own).
    A trial lies within noise of the best when their means differ by less than `NOISE_SE`
    standard errors of the difference.
    """
    done = [r for r in rows if r["val_accuracy"] is not None]
    repeated = [r for r in done if (r["executions"] or 0) > 1]
    if not repeated:
        return None
    dof = sum(r["executions"] - 1 for r in repeated)
    sd = math.sqrt(sum((r["executions"] - 1) * r["val_std"] ** 2 for r in repeated) / dof)
    best = max(done, key=lambda r: r["val_accuracy"])

    def close(r: dict[str, Any]) -> bool:
        se = sd * math.sqrt(1 / (best["executions"] or 1) + 1 / (r["executions"] or 1))
        return best["val_accuracy"] - r["val_accuracy"] < NOISE_SE * se

    within = [r["trial"] for r in sorted(done, key=lambda r: -r["val_accuracy"]) if close(r)]
    return {"sd": sd, "trials": len(repeated), "within": within, "completed": len(done)}


def noise_line(noise: dict[str, Any] | None) -> str:
    """One sentence: whether the best trial stands out from seed noise."""
    if noise is None:
        return (
            "One execution per trial: seed noise is not measured, so close scores may not "
            "differ at all (--executions 3 measures it)."
        )
    trials = "1 trial" if noise["trials"] == 1 else f"{noise['trials']} trials"
    spread = f"seed standard deviation {noise['sd']:.4f}, pooled over {trials}"
    within = noise["within"]
    if noise["completed"] == 1:
        return f"One trial, nothing to rank: its executions measure the seed noise ({spread})."
    if len(within) == 1:
        return f"Trial {within[0]} leads every other by more than seed noise ({spread})."
    return (
        f"Trials {', '.join(within)} lie within seed noise of each other ({spread}; "
        f"differences under {NOISE_SE:g} standard errors): the search names no winner among them."
    )


def fidelity_line(result: dict[str, Any]) -> str:
    """`digits fidelity`'s figures in one sentence."""

    def corr(name: str) -> str:
        value, ci = result[name], result[f"{name}_95"]
        if value is None:
            return f"{name} undefined (a constant side)"
        return f"{name} {value:+.2f}" + (f" [{ci[0]:+.2f}, {ci[1]:+.2f}]" if ci else "")

    n = len(result["configurations"])
    verdict = "within" if result["regret_within_seed_spread"] else "beyond"
    chance = result["spearman_chance"]
    odds = "" if chance is None else f"; a random ranking does as well {chance:.0%} of the time"
    return (
        f"Fidelity ({n} configurations x {result['seeds']} seeds, {result['epochs']} epoch(s) "
        f"on {result['train_images']:,} images): {corr('spearman')}, {corr('kendall')} "
        f"(95% bootstrap intervals{odds}); the search's pick (trial {result['pick']}) makes "
        f"{result['regret_errors']:.1f} more validation errors than the best sampled (trial "
        f"{result['best_at_full_fidelity']}), {verdict} one configuration's seed spread of "
        f"{result['seed_spread_errors']:.1f}.{differ_clause(result.get('differ_p'))}"
    )


def differ_clause(p: float | None) -> str:
    """Whether the sampled configurations differ at full fidelity beyond seed noise."""
    if p is None:
        return ""
    if p < DIFFER_P:
        return (
            f" The configurations differ beyond seed noise at full fidelity (ANOVA {format_p(p)})."
        )
    return (
        f" At full fidelity the configurations do not differ beyond seed noise (ANOVA "
        f"{format_p(p)}): this space leaves a search little to choose; the correlation is noise."
    )


def format_p(p: float) -> str:
    """A p-value as people read one: two decimals, three near 0.05, and "< 0.001"."""
    return "p < 0.001" if p < 0.001 else f"p {p:.3f}" if p < 0.1 else f"p {p:.2f}"


def update_csv(study: Study) -> Path:
    """Rewrite `trials.csv` of the study (atomically) and return its path."""
    path = study.dir / CSV_FILE
    write_atomic(path, to_csv(trial_rows(study)))
    return path
