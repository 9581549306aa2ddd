"""Calibration of ensemble members on the validation split: who outvotes whom in the average.

    python benchmarks/calibration.py --study NAME [--logs logs]

For a study whose members were retrained with `--hold-out`, prints each member's label
smoothing, its errors on the study's validation split and its mean top probability (how sure
it is), how many images all of them or any of them miss, then the errors of the probability
average of every subset of two or more members.
Replaces the `calibration` section of BENCHMARKS.md. Reads no test image.
"""

from __future__ import annotations

import argparse
import itertools
import os
from pathlib import Path

from search.quiet import TF_ENV

os.environ.update({**TF_ENV, **os.environ})  # TensorFlow as the toolkit runs it

import numpy as np
from throughput import hardware, stale_install, update_benchmarks

from search.ensemble import accuracy, load_members, predict
from search.retrain import load_study_data, validation_split
from search.study import Study


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", required=True)
    parser.add_argument("--logs", type=Path, default=Path("logs"))
    args = parser.parse_args()
    if why := stale_install():
        parser.error(why)
    study = Study(args.study, args.logs)
    manifests, members = load_members(study)
    if not manifests[0].get("hold_out"):
        raise SystemExit(f"{study.dir}: members saw the validation split; retrain --hold-out")
    split = validation_split(study, load_study_data(study))
    probs = {m.name: predict(m, split.x_val) for m in members}
    smoothing = {m["name"]: m["config"].get("label_smoothing", 0.0) for m in manifests}

    def errors(names: tuple[str, ...]) -> int:
        return accuracy(np.mean([probs[n] for n in names], axis=0), split.y_val)[1]

    rows = [
        f"| {n} | {smoothing[n]} | {errors((n,))} | {probs[n].max(axis=1).mean():.3f} |"
        for n in probs
    ]
    missed = np.stack([p.argmax(axis=1) != split.y_val for p in probs.values()])
    subsets = [
        f"| {' + '.join(names)} | {errors(names)} |"
        for k in range(2, len(probs) + 1)
        for names in itertools.combinations(probs, k)
    ]
    text = "\n".join(
        [
            "## Calibration: who outvotes whom in the ensemble's average",
            "",
            f"`python benchmarks/calibration.py --study {study.name} --logs {args.logs}` on "
            f"{hardware()}: members "
            f"of study {study.name} retrained without its validation split "
            f"({len(split.y_val):,} images), scored on it.",
            "",
            "| member | label smoothing | validation errors | mean top probability |",
            "|---|---|---|---|",
            *rows,
            "",
            f"Images every member misses: {int(missed.all(axis=0).sum())}; "
            f"images some member misses: {int(missed.any(axis=0).sum())}.",
            "",
            "| probability average of | validation errors |",
            "|---|---|",
            *subsets,
        ]
    )
    print(text)
    update_benchmarks("calibration", text)


if __name__ == "__main__":
    main()
