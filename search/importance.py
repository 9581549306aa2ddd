"""Which hyperparameters matter: importances from the trials table, and score-vs-value plots.

A random forest (scikit-learn) learns validation accuracy from the hyperparameters of the
completed trials; permutation importance then measures how much its fit suffers when one
hyperparameter's column is shuffled. With few trials the ranking is noisy, and says so.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np

from search.study import write_atomic

SCORE = "val_accuracy"
FEW_TRIALS = 20  # below this, or below 5 trials per hyperparameter, rankings are unreliable


def varying_params(rows: list[dict[str, Any]], names: list[str]) -> list[str]:
    """The hyperparameters that take more than one value among the rows."""
    return [n for n in names if len({repr(r.get(n)) for r in rows}) > 1]


def encode(rows: list[dict[str, Any]], names: list[str]) -> np.ndarray:
    """A numeric matrix: numbers as they are, booleans 0/1, anything else by sorted category."""
    columns = []
    for n in names:
        values = [r.get(n) for r in rows]
        if all(isinstance(v, int | float) and v is not None for v in values):
            columns.append(np.array(values, dtype=float))
        else:
            categories = sorted({repr(v) for v in values})
            columns.append(np.array([categories.index(repr(v)) for v in values], dtype=float))
    return np.stack(columns, axis=1)


def rank(rows: list[dict[str, Any]], names: list[str], seed: int = 0) -> list[tuple[str, float]]:
    """(hyperparameter, share of importance), most important first; shares sum to 1."""
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.inspection import permutation_importance

    x = encode(rows, names)
    y = np.array([r[SCORE] for r in rows], dtype=float)
    forest = RandomForestRegressor(n_estimators=300, random_state=seed).fit(x, y)
    result = permutation_importance(forest, x, y, n_repeats=20, random_state=seed)
    raw = np.clip(result.importances_mean, 0, None)
    shares = raw / raw.sum() if raw.sum() > 0 else np.full(len(names), 1 / len(names))
    return sorted(zip(names, shares.tolist(), strict=True), key=lambda p: -p[1])


def uncertainty(n_trials: int, n_params: int) -> str:
    if n_trials < max(FEW_TRIALS, 5 * n_params):
        return (
            f"only {n_trials} completed trials for {n_params} hyperparameters: "
            "the ranking is uncertain, run more trials before trusting it"
        )
    return ""


def plot(rows: list[dict[str, Any]], name: str, log_scale: bool, path: Path) -> None:
    """Validation accuracy against one hyperparameter's values, a point per trial."""
    values = [r.get(name) for r in rows]
    scores = [r[SCORE] for r in rows]
    fig, ax = plt.subplots(figsize=(5, 3.4), dpi=100)
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        ax.scatter(values, scores, alpha=0.7)
        if log_scale:
            ax.set_xscale("log")
    else:
        labels = sorted({str(v) for v in values})
        ax.scatter([labels.index(str(v)) for v in values], scores, alpha=0.7)
        ax.set_xticks(range(len(labels)), labels)
    ax.set(xlabel=name, ylabel=SCORE, title=f"{SCORE} vs {name}")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def analyse(
    rows: list[dict[str, Any]], names: list[str], log_params: set[str], folder: Path
) -> dict[str, Any]:
    """Rank the varying hyperparameters of the completed rows; write plots and a summary."""
    done = [r for r in rows if r.get(SCORE) is not None and math.isfinite(r[SCORE])]
    varying = varying_params(done, names)
    if len(done) < 3 or not varying:
        return {
            "ranking": [],
            "note": f"{len(done)} completed trials, "
            f"{len(varying)} varying hyperparameters: nothing to rank yet",
            "plots": [],
        }
    folder.mkdir(parents=True, exist_ok=True)
    plots = []
    for name in varying:
        path = folder / f"{name}.png"
        plot(done, name, name in log_params, path)
        plots.append(path)
    summary = {
        "ranking": rank(done, varying),
        "note": uncertainty(len(done), len(varying)),
        "trials": len(done),
        "plots": [str(p) for p in plots],
    }
    write_atomic(folder / "importance.json", json.dumps(summary, indent=1) + "\n")
    return summary
