"""Test-time views on the validation split: which views, if any, members should also read.

    python benchmarks/tta.py --study NAME [--study NAME ...] [--logs logs]

For the members of studies trained without their validation split (`digits retrain
--hold-out`, `digits fidelity`), counts each member's errors on its study's validation split
reading the image alone, and averaged over the image and its one-pixel shifts (up, down,
left, right) or the image turned by a few degrees each way (`search.ensemble.turn_matrix`,
the map the ensemble's test-time views use); then the same for every pair of members of a
study averaged. Differences are paired: the same member with and without the views.
Replaces the `tta` section of BENCHMARKS.md. Reads no test image.
"""

from __future__ import annotations

import argparse
import itertools
import os
import time
from pathlib import Path

from search.quiet import TF_ENV

os.environ.update({**TF_ENV, **os.environ})  # TensorFlow as the toolkit runs it

import numpy as np
from scipy import ndimage
from throughput import hardware, stale_install, update_benchmarks

from search.compare import held_out_members
from search.ensemble import load_member, predict, turn_matrix
from search.retrain import load_study_data, validation_split
from search.study import Study

TURNS = (3.0, 5.0, 7.0, 9.0, 12.0)  # degrees each way


def turned(x: np.ndarray, degrees: float) -> np.ndarray:
    return (x.reshape(len(x), -1) @ turn_matrix(degrees)).reshape(x.shape)


SHIFTS = ((1, 0), (-1, 0), (0, 1), (0, -1))
# Each way of reading: its views beside the image itself (shifts, or turns of some degrees).
VIEWS: dict[str, tuple[str, float]] = {
    "one-pixel shifts (5 views)": ("shifts", 0.0),
    **{f"turns of {d:g} degrees each way (3 views)": ("turns", d) for d in TURNS},
}


def views(x: np.ndarray, kind: str, degrees: float) -> list[np.ndarray]:
    """The views of `x` beside itself."""
    if kind == "shifts":  # whole pixels, black where moved in
        return [ndimage.shift(x, (0, d, r), order=0) for d, r in SHIFTS]
    return [turned(x, -degrees), turned(x, degrees)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", action="append", required=True, help="repeat it")
    parser.add_argument("--logs", type=Path, default=Path("logs"))
    args = parser.parse_args()
    if why := stale_install():
        parser.error(why)
    began = time.perf_counter()
    alone: dict[str, list[int]] = {v: [] for v in ["the image alone", *VIEWS]}
    pairs: dict[str, list[int]] = {v: [] for v in alone}
    counts = []
    for name in args.study:
        study = Study(name, args.logs)
        members = [load_member(m, path) for _, m, path in held_out_members(study)]
        split = validation_split(study, load_study_data(study))
        x, y = split.x_val.astype(np.float32), split.y_val
        seen = {label: views(x, *how) for label, how in VIEWS.items()}
        plain = [predict(m, x) for m in members]
        for label in alone:
            probs = [
                np.mean([p, *(predict(m, v) for v in seen.get(label, []))], axis=0)
                for m, p in zip(members, plain, strict=True)
            ]
            alone[label] += [int((p.argmax(axis=1) != y).sum()) for p in probs]
            pairs[label] += [
                int(((a + b).argmax(axis=1) != y).sum())
                for a, b in itertools.combinations(probs, 2)
            ]
        plural = "s" * (len(members) > 1)
        counts.append(f"{name} ({len(members)} member{plural}, {len(y):,} images)")
    base, base_pairs = np.array(alone["the image alone"]), np.array(pairs["the image alone"])

    def row(label: str) -> str:
        d, dp = np.array(alone[label]) - base, np.array(pairs[label]) - base_pairs
        se = d.std(ddof=1) / np.sqrt(len(d)) if d.any() else 0.0
        return (
            f"| {label} | {np.mean(alone[label]):.2f} | {d.mean():+.2f} ± {se:.2f} | "
            f"{int((d > 0).sum())} of {len(d)} | {np.mean(pairs[label]):.2f} | "
            f"{dp.mean():+.2f} |"
        )

    text = "\n".join(
        [
            f"`python benchmarks/tta.py {' '.join(f'--study {s}' for s in args.study)}` on "
            f"{hardware()}, {time.strftime('%Y-%m-%d')}, "
            f"{(time.perf_counter() - began) / 60:.0f} min: the held-out members of "
            f"{', '.join(counts)}, on their studies' validation splits.",
            "",
            "| what each member reads | errors per member | against the image alone "
            "(± standard error) | members that err more | errors per pair | against the "
            "image alone |",
            "|---|---|---|---|---|---|",
            *(row(label) for label in alone),
        ]
    )
    print(text)
    update_benchmarks("tta", text)


if __name__ == "__main__":
    main()
