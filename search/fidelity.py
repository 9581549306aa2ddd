"""Does the search rank configurations the way full training does? Measured, not assumed.

A search scores each configuration on a short, cheap training (few epochs, few images); the
configurations it ranks first are then retrained long. `measure` takes a finished study,
retrains a sample of its trials at full fidelity (the given epochs, on every training image
outside the study's validation split) with several seeds each, and counts each member's
errors on that validation split. `summarize` turns the counts into:

- the rank correlation (Spearman's rho, Kendall's tau) between the search's scores and the
  full-fidelity accuracies, with a 95% bootstrap interval that resamples configurations and,
  within each, its seeds, and the chance that a random ranking correlates as well (exact over
  every permutation): at 4-8 configurations a bootstrap interval is narrower than the truth,
  and the permutation chance says how little a few configurations can show;
- the regret of the search's pick (its mean validation errors at full fidelity minus those of
  the best sampled configuration), next to the seed spread of one configuration (the pooled
  standard deviation of errors between seeds): a regret inside the spread is seed noise;
- whether the sampled configurations differ at full fidelity at all (one-way ANOVA of their
  errors by seed): where they do not, a search of this space has little to choose and its
  rank correlation measures noise.

Members live in `logs/<study>/fidelity/` (resumable like retraining); the figures in
`logs/<study>/fidelity.json`, which `digits results` shows.
"""

from __future__ import annotations

import itertools
import json
import math
from typing import Any

import numpy as np
from rich.console import Console
from scipy import stats

from search.ensemble import accuracy, load_member, predict
from search.results import FIDELITY_FILE
from search.retrain import (
    best_trials,
    load_study_data,
    member_files,
    retrain,
    trial_members,
    validation_split,
)
from search.study import Study, StudyError, write_atomic

STAGE = "fidelity"  # members in logs/<study>/fidelity/, by the `digits fidelity` command
BOOTSTRAP_ROUNDS = 2000
EXACT_PERMUTATIONS = 8  # up to this many configurations, every ranking (8! = 40,320)
RANDOM_PERMUTATIONS = 20000


def sample_ranks(trials: int, sample: int) -> list[int]:
    """Ranks (0 = the search's pick) of `sample` trials spread evenly over the ranking.

    The pick is always in: its regret is one of the two figures. The worst is in too, so the
    sample spans the whole range of search scores the correlation is computed over.

    Raises:
        ValueError: a sample of fewer than 2, which no correlation can be computed over.
    """
    if sample < 2:
        raise ValueError(f"sample: a rank correlation needs 2 configurations or more, got {sample}")
    if trials <= sample:
        return list(range(trials))
    return sorted({round(i * (trials - 1) / (sample - 1)) for i in range(sample)})


def plan(
    study: Study, trials: list[dict[str, Any]], sample: int, seeds: int, epochs: int | None
) -> list:
    """The members to train: `seeds` per sampled trial of `trials` (the study's completed
    ones, best first), each trial's own epochs by default."""
    if seeds < 2:
        raise StudyError("fidelity needs at least 2 seeds per configuration to see seed noise")
    if len(trials) < 3:
        raise StudyError(
            f"study '{study.name}' has {len(trials)} completed trial(s); a rank correlation "
            "needs at least 3"
        )
    return [
        member
        for rank in sample_ranks(len(trials), sample)
        for member in trial_members(
            study,
            trials[rank],
            rank,
            seeds,
            epochs or int(trials[rank]["hyperparameters"]["values"]["epochs"]),
            hold_out=True,
        )
    ]


def measure(
    study: Study, sample: int, seeds: int, epochs: int | None, console: Console
) -> dict[str, Any]:
    """Retrain the sample at full fidelity (resuming), count validation errors, summarise;
    writes `fidelity.json` and returns it."""
    trials = best_trials(study)
    members = plan(study, trials, sample, seeds, epochs)
    rank = {t["trial_id"]: i for i, t in enumerate(trials)}
    planned = {m.name: m.epochs for m in members}
    stale = [
        m["name"]
        for m, _ in member_files(study, STAGE)
        if planned.get(m["name"], m["epochs"]) != m["epochs"]
    ]
    if stale:
        raise StudyError(
            f"{study.dir / STAGE}: {', '.join(stale)} trained for other epochs; "
            "pass the same --epochs, or delete the folder to start over"
        )
    retrain(study, members, console, stage=STAGE)
    split = validation_split(study, load_study_data(study))
    rows = []
    for manifest, path in member_files(study, STAGE):
        if manifest["name"] not in planned:
            continue
        _, errors = accuracy(predict(load_member(manifest, path), split.x_val), split.y_val)
        rows.append(
            {
                "trial": manifest["trial_id"],
                "rank": rank[manifest["trial_id"]],
                "seed": manifest["seed"],
                "search_score": manifest["val_accuracy"],
                "val_errors": errors,
            }
        )
    result = {
        "epochs": "-".join(map(str, sorted({m.epochs for m in members}))),
        "seeds": seeds,
        "train_images": len(split.y_train),
        "val_images": len(split.y_val),
        "members": rows,
        **summarize(rows, len(split.y_val)),
    }
    write_atomic(study.dir / FIDELITY_FILE, json.dumps(result, indent=2) + "\n")
    return result


def by_configuration(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Members grouped by trial, in the search's order (its pick first)."""
    trials: dict[str, dict[str, Any]] = {}
    for r in rows:
        t = trials.setdefault(
            r["trial"],
            {
                "trial": r["trial"],
                "rank": r["rank"],
                "search_score": r["search_score"],
                "val_errors": [],
            },
        )
        t["val_errors"].append(r["val_errors"])
    return sorted(trials.values(), key=lambda t: t["rank"])


def summarize(rows: list[dict[str, Any]], val_images: int, seed: int = 0) -> dict[str, Any]:
    """Rank correlations with their bootstrap intervals, the pick's regret, the seed spread."""
    configs = by_configuration(rows)
    score = np.array([c["search_score"] for c in configs])
    errors = [np.array(c["val_errors"], dtype=float) for c in configs]
    mean = np.array([e.mean() for e in errors])
    for c, m in zip(configs, mean, strict=True):
        c["mean_val_errors"] = float(m)
        c["full_val_accuracy"] = 1 - float(m) / val_images
    # Fewer errors is better: correlate the search's score with full-fidelity accuracy.
    rho, tau = _correlations(score, -mean)
    rng = np.random.default_rng(seed)
    boot: list[tuple[float, float]] = []
    for _ in range(BOOTSTRAP_ROUNDS):
        picked = rng.integers(0, len(configs), len(configs))
        resampled = [rng.choice(errors[i], len(errors[i])).mean() for i in picked]
        pair = _correlations(score[picked], -np.array(resampled))
        if None not in pair:
            boot.append(pair)
    spread = float(np.sqrt(np.mean([e.var(ddof=1) for e in errors if len(e) > 1])))
    regret = float(mean[0] - mean.min())
    return {
        "configurations": configs,
        "spearman": rho,
        "spearman_95": _interval([b[0] for b in boot]),
        "spearman_chance": _chance(score, -mean, rho, rng),
        "kendall": tau,
        "kendall_95": _interval([b[1] for b in boot]),
        "pick": configs[0]["trial"],
        "best_at_full_fidelity": configs[int(mean.argmin())]["trial"],
        "regret_errors": regret,
        "seed_spread_errors": spread,
        "regret_within_seed_spread": regret <= spread,
        "differ_p": _differ_p(errors),
    }


def _differ_p(errors: list[np.ndarray]) -> float | None:
    """One-way ANOVA: the chance that seed noise alone puts the configurations' mean errors as
    far apart as they are (None where no configuration has two seeds)."""
    if sum(len(e) for e in errors) <= len(errors):
        return None
    if all(np.ptp(e) == 0 for e in errors):  # seeds agree exactly: only the means can differ
        return 0.0 if np.ptp([e.mean() for e in errors]) > 0 else 1.0
    return float(stats.f_oneway(*errors).pvalue)


def _correlations(a: np.ndarray, b: np.ndarray) -> tuple[float | None, float | None]:
    """Spearman's rho and Kendall's tau (None where either side is constant)."""
    if len(set(a.tolist())) < 2 or len(set(b.tolist())) < 2:
        return None, None
    return float(stats.spearmanr(a, b).statistic), float(stats.kendalltau(a, b).statistic)


def _chance(
    a: np.ndarray, b: np.ndarray, rho: float | None, rng: np.random.Generator
) -> float | None:
    """The share of orderings of `b` whose Spearman correlation with `a` reaches `rho`:
    a one-sided permutation p-value, exact over every ordering of a few configurations."""
    if rho is None:
        return None
    n = len(b)
    if n <= EXACT_PERMUTATIONS:
        orders = np.array(list(itertools.permutations(range(n))))
    else:
        orders = np.array([rng.permutation(n) for _ in range(RANDOM_PERMUTATIONS)])
    # Spearman's rho is Pearson's r of the ranks: centre both, then one product per ordering.
    ra, rb = stats.rankdata(a), stats.rankdata(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    r = (rb[orders] @ ra) / math.sqrt((ra**2).sum() * (rb**2).sum())
    return float(np.mean(r >= rho - 1e-9))


def _interval(values: list[float]) -> list[float] | None:
    if len(values) < BOOTSTRAP_ROUNDS // 2:  # mostly degenerate resamples: no honest interval
        return None
    return [float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))]
