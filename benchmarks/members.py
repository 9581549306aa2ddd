"""The full preset's members pooled across runs, on the test set: for the record only.

    python benchmarks/members.py DIR [DIR ...]

Each DIR is the --workdir of one `preset.py full` run. Its members (retrained on all 60,000
training images) are scored on the 10,000 test images, which each run has already read once
for its own result: this chooses nothing, it describes where the runs' errors lie. Per run:
its members' errors, their average's and the images all of them miss; the images every run's
average misses. Pooled: how many test images how many members miss, and the errors of the
average of every k members, for every k: would more members of this family reach the goal?
Replaces the `members-test` section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
from ab import missed_table, scores, size_table
from throughput import hardware, stale_install, update_benchmarks


def run_probs(folder: Path) -> tuple[str, list[np.ndarray], np.ndarray]:
    """The study in `folder`: its name, each member's test probabilities, the test labels."""
    from search.ensemble import load_member, predict
    from search.retrain import finished_members, load_study_data
    from search.study import Study

    (retrain,) = (folder / "logs").glob("*/retrain")  # one run per folder, as preset.py keeps
    study = Study(retrain.parent.name, folder / "logs")
    data = load_study_data(study)
    probs = [predict(load_member(m, path), data.x_test) for m, path in finished_members(study)]
    return study.name, probs, data.y_test


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", type=Path, nargs="+", metavar="DIR")
    args = parser.parse_args()
    if why := stale_install():
        parser.error(why)
    started = time.perf_counter()
    runs = [run_probs(folder) for folder in args.folders]
    y = runs[0][2]
    rows, averages_miss = [], []
    for name, probs, _ in runs:
        s = scores(probs, y)
        errors = ", ".join(map(str, s["errors"]))
        rows.append(f"| {name} | {errors} | {s['average']} | {s['all_miss']} |")
        averages_miss.append(np.mean(probs, axis=0).argmax(axis=1) != y)
    everyone = [p for _, probs, _ in runs for p in probs]
    curve = size_table({"errors of the average: mean (min-max)": everyone}, y)
    minutes = (time.perf_counter() - started) / 60
    text = "\n".join(
        [
            "## The full preset's members pooled across runs, on the test set (for the record)",
            "",
            f"`python benchmarks/members.py {' '.join(map(str, args.folders))}` on "
            f"{hardware()}, {time.strftime('%Y-%m-%d')} ({minutes:.0f} min this run). "
            f"The members the runs retrained on all 60,000 training images, scored on the "
            f"{len(y):,} test images each run has already read once; this chooses nothing.",
            "",
            "| run | test errors per member | errors of the average | missed by all |",
            "|---|---|---|---|",
            *rows,
            "",
            f"Test images the average of every run misses: "
            f"{int(np.logical_and.reduce(averages_miss).sum())}.",
            "",
            *missed_table(everyone, y, "test images"),
            "",
            *curve,
        ]
    )
    print(text)
    update_benchmarks("members-test", text)


if __name__ == "__main__":
    main()
