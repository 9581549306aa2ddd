"""Which members to average? Held-out members of one or more studies, compared on validation.

Members retrained without the validation split (`digits retrain --hold-out`, and every member
`digits fidelity` trains) can be scored on it. `compare` pools such members from several
studies (for example two model families, each searched in its own space), counts each
member's validation errors, groups the seeds of one configuration (mean and spread), and
averages members into ensembles: each study's own, all of them together, and a forward
selection that adds, one at a time, the member that lowers the ensemble's errors most
(Caruana et al., 2004). The selection is chosen on the split it is scored on, so its figure
flatters it; each study's ensemble and the pooled one choose nothing. Against each study's own
ensemble the pooled one is counted image by image: how many it fixes, how many it breaks.

It also averages what `digits retrain --top k` would: each study's k best trials in its search,
one seed of each, at each epoch count its members were trained for, over every combination of
their seeds. Rows of about equal minutes weigh more members against longer ones.

The studies must hold out the same split (same data, size and seed). Nothing is written and
the test set is not read: this is where an ensemble's make-up is chosen.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np

from search.ensemble import accuracy, load_member, predict
from search.fidelity import STAGE as FIDELITY_STAGE
from search.retrain import (
    RETRAIN_DIR,
    best_trials,
    load_study_data,
    member_files,
    validation_split,
)
from search.study import Study, StudyError

STAGES = (RETRAIN_DIR, FIDELITY_STAGE)  # the folders a study's members can live in
# Seed combinations averaged for one top-k row: enough for a mean; all of them can run to
# millions (seeds ** k).
MAX_COMBINATIONS = 1000


@dataclass(frozen=True)
class Scored:
    """One held-out member and its probabilities on the validation split."""

    label: str  # study/stage/member: a study's retrain and fidelity folders reuse names
    study: str
    trial_id: str
    epochs: int
    seconds: float
    probs: np.ndarray
    errors: int


def scored(
    study: Study, stage: str, manifest: dict[str, Any], probs: np.ndarray, labels: np.ndarray
) -> Scored:
    return Scored(
        label=f"{study.name}/{stage}/{manifest['name']}",
        study=study.name,
        trial_id=str(manifest["trial_id"]),
        epochs=int(manifest["epochs"]),
        seconds=float(manifest.get("seconds", 0.0)),
        probs=probs,
        errors=accuracy(probs, labels)[1],
    )


def held_out_members(study: Study) -> list[tuple[str, dict[str, Any], Any]]:
    """(stage, manifest, model path) of the study's members trained without its validation
    split, from `digits retrain --hold-out` and `digits fidelity`."""
    found = [
        (stage, manifest, path)
        for stage in STAGES
        for manifest, path in member_files(study, stage)
        if manifest.get("hold_out")
    ]
    if not found:
        raise StudyError(
            f"study '{study.name}' has no members trained without its validation split; "
            "run `digits retrain --hold-out` or `digits fidelity` first"
        )
    return found


def shared_split(studies: list[Study]) -> tuple[Any, Any]:
    """The validation images and labels every study holds out, or a clear error if they differ."""

    def split_of(study: Study) -> tuple[str, int, int]:
        record = study.read()
        return record["data"]["sha256"], record["data"]["val"], record.get("seed", 0)

    first = split_of(studies[0])
    for study in studies[1:]:
        if split_of(study) != first:
            raise StudyError(
                f"studies '{studies[0].name}' and '{study.name}' hold out different validation "
                "splits (data, --val-size or --seed differ); compare studies searched alike"
            )
    split = validation_split(studies[0], load_study_data(studies[0]))
    return split.x_val, split.y_val


def _scores(probs: np.ndarray, labels: np.ndarray) -> tuple[int, float]:
    """Errors, then log loss to break the many ties of a count."""
    true = np.clip(probs[np.arange(len(labels)), labels], 1e-12, None)
    return accuracy(probs, labels)[1], float(-np.log(true).mean())


def forward_selection(members: list[Scored], labels: np.ndarray) -> list[dict[str, Any]]:
    """Greedy: start from the member with fewest errors, add the one that lowers the
    ensemble's errors most (ties: its log loss), until every member is in. Each step's
    ensemble, so a reader sees where more members stop paying."""
    chosen: list[int] = []
    total = np.zeros_like(members[0].probs)
    steps = []
    while len(chosen) < len(members):
        scores = {
            i: _scores((total + members[i].probs) / (len(chosen) + 1), labels)
            for i in range(len(members))
            if i not in chosen
        }
        best = min(scores, key=scores.__getitem__)
        chosen.append(best)
        total += members[best].probs
        steps.append(_ensemble([members[i] for i in chosen], labels, total / len(chosen)))
    return steps


def _ensemble(group: list[Scored], labels: np.ndarray, probs: np.ndarray) -> dict[str, Any]:
    return {
        "members": [m.label for m in group],
        "val_errors": accuracy(probs, labels)[1],
        "minutes": round(sum(m.seconds for m in group) / 60, 1),
    }


def _spread(errors: list[int]) -> dict[str, Any]:
    """Error counts, their mean, and their standard deviation where there are two or more."""
    return {
        "val_errors": errors,
        "mean": float(np.mean(errors)),
        "sd": float(np.std(errors, ddof=1)) if len(errors) > 1 else None,
    }


def by_configuration(members: list[Scored]) -> list[dict[str, Any]]:
    """Seeds of one configuration (study and trial) together: errors, mean, spread."""
    groups: dict[tuple[str, str], list[Scored]] = {}
    for m in members:
        groups.setdefault((m.study, m.trial_id), []).append(m)
    rows = []
    for (study, trial), group in groups.items():
        errors = [m.errors for m in group]
        rows.append(
            {
                "study": study,
                "trial": trial,
                "epochs": sorted({m.epochs for m in group}),
                **_spread(errors),
                "minutes_each": round(float(np.mean([m.seconds for m in group])) / 60, 1),
            }
        )
    return sorted(rows, key=lambda r: r["mean"])


def top_ensembles(
    members: list[Scored], ranks: dict[str, list[str]], labels: np.ndarray
) -> list[dict[str, Any]]:
    """For each study and epoch count, the ensembles of its `k` best trials (`ranks`: each
    study's trial ids, best first), one seed each, for every `k` its members cover from the
    top: errors over the seed combinations (up to `MAX_COMBINATIONS`), and the minutes
    they cost (each trial's mean member)."""
    groups: dict[tuple[str, int], dict[str, list[Scored]]] = {}
    for m in members:
        groups.setdefault((m.study, m.epochs), {}).setdefault(m.trial_id, []).append(m)
    rows = []
    for (study, epochs), seeds in sorted(groups.items()):
        top = list(itertools.takewhile(seeds.__contains__, ranks[study]))
        for k in range(1, len(top) + 1):
            combinations = itertools.product(*(seeds[t] for t in top[:k]))
            errors = [
                accuracy(np.mean([m.probs for m in group], axis=0), labels)[1]
                for group in itertools.islice(combinations, MAX_COMBINATIONS)
            ]
            rows.append(
                {
                    "study": study,
                    "epochs": epochs,
                    "top": k,
                    "trials": top[:k],
                    "ensembles": len(errors),
                    **_spread(errors),
                    "minutes": round(
                        float(sum(np.mean([m.seconds for m in seeds[t]]) for t in top[:k])) / 60,
                        1,
                    ),
                }
            )
    return rows


def compare(studies: list[Study]) -> dict[str, Any]:
    """Every held-out member of `studies` on their shared validation split, and ensembles of
    them (see the module's docstring). Reads the validation split only."""
    x, y = shared_split(studies)
    members = [
        scored(study, stage, manifest, predict(load_member(manifest, path), x), y)
        for study in studies
        for stage, manifest, path in held_out_members(study)
    ]

    def averaged(group: list[Scored]) -> tuple[dict[str, Any], np.ndarray]:
        """The group's ensemble, and the validation images it gets wrong."""
        probs = np.mean([m.probs for m in group], axis=0)
        return _ensemble(group, y, probs), np.flatnonzero(probs.argmax(axis=1) != y)

    ranks = {s.name: [str(t["trial_id"]) for t in best_trials(s)] for s in studies}
    pooled, pooled_wrong = averaged(members)
    own = {}
    for study in studies:
        own[study.name], wrong = averaged([m for m in members if m.study == study.name])
        own[study.name]["pooled_fixes"] = len(np.setdiff1d(wrong, pooled_wrong))
        own[study.name]["pooled_breaks"] = len(np.setdiff1d(pooled_wrong, wrong))
    return {
        "val_images": len(y),
        "members": [
            {"member": m.label, "epochs": m.epochs, "val_errors": m.errors} for m in members
        ],
        "configurations": by_configuration(members),
        "studies": own,
        "pooled": pooled,
        "selection": forward_selection(members, y),
        "top": top_ensembles(members, ranks, y),
    }
