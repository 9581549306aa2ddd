"""Elastic distortion or not: an A/B of the full preset's augmentation on the validation split.

    python benchmarks/augment_ab.py [--epochs 8] [--seeds 2] [--workdir DIR]

Both arms train one fixed configuration of the full preset's space (spaces/full.toml: its
first choice of every tunable value but the dense width, 256) with the toolkit itself: a
one-trial search fixes the study and its validation split, then `digits retrain --hold-out`
trains `--seeds` members per arm on the other 55,000 images. Arm `affine` is the full
preset's augmentation; arm `elastic` adds an elastic distortion (alpha 34, sigma 4, Simard
et al. 2003) on top. Scored on the 5,000 validation images only (the test set is not read):
each member's errors and mean negative log-likelihood (less noisy than errors at this
accuracy), and the errors of each arm's probability average. The augmentation's own cost is
measured apart (benchmarks/throughput.py's input-pipeline line), not here.
Rerun with the same --workdir to resume. Replaces the `augment-ab` section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
from throughput import hardware, update_benchmarks

SPACE = """
description = "augment A/B: one configuration of the full preset, arm {arm}"
[model]
blocks = 2
convs_per_block = 2
filters_1 = 32
filters_2 = 64
kernel_size = 3
padding = "valid"
batch_norm = true
downsample = "maxpool"
dropout_conv = 0.2
dense_layers = 1
dense_units = 256
dropout_dense = 0.4
[augment]
rotation = 10.0
zoom = 0.1
translate = 0.1
elastic = {elastic}
[train]
optimizer = "adam"
learning_rate = 1e-3
schedule = "cosine"
warmup_epochs = 1
label_smoothing = 0.1
batch_size = 128
epochs = 24
"""
ARMS = {"affine": 0.0, "elastic": 34.0}


def digits(*args: str, cwd: Path) -> None:
    subprocess.run([sys.executable, "-m", "search", *args], cwd=cwd, check=True)


def train_arm(arm: str, folder: Path, epochs: int, seeds: int) -> None:
    """The arm's study (a one-trial, one-epoch search on 2,000 images: it only fixes the
    configuration and the validation split) and its hold-out members; both resume."""
    space = folder / f"{arm}.toml"
    space.write_text(SPACE.format(arm=arm, elastic=ARMS[arm]))
    if not (folder / "logs" / arm / "tuner" / "oracle.json").exists():
        search = ["search", "--space", str(space), "--study", arm, "--tuner", "random"]
        digits(
            *search, "--max-trials", "1", "--max-epochs", "1", "--train-size", "2000", cwd=folder
        )
    retrain = ["retrain", "--study", arm, "--top", "1", "--seeds", str(seeds)]
    digits(*retrain, "--epochs", str(epochs), "--hold-out", cwd=folder)


def score_arm(arm: str, folder: Path) -> dict:
    from search.ensemble import accuracy, load_members, predict
    from search.retrain import load_study_data, validation_split
    from search.study import Study

    study = Study(arm, folder / "logs")
    _, members = load_members(study)
    split = validation_split(study, load_study_data(study))
    y = split.y_val
    probs = [predict(m, split.x_val) for m in members]

    def nll(p: np.ndarray) -> float:
        return float(-np.log(np.maximum(p[np.arange(len(y)), y], 1e-12)).mean())

    return {
        "members": [(accuracy(p, y)[1], nll(p)) for p in probs],
        "average": accuracy(np.mean(probs, axis=0), y)[1],
        "val_images": len(y),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--seeds", type=int, default=2, help="members per arm")
    parser.add_argument("--workdir", type=Path, help="run here and keep the outputs (resumable)")
    args = parser.parse_args()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.workdir or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        for arm in ARMS:
            train_arm(arm, folder, args.epochs, args.seeds)
        scores = {arm: score_arm(arm, folder) for arm in ARMS}
    minutes = (time.perf_counter() - started) / 60
    rows = []
    for arm, s in scores.items():
        errors = ", ".join(str(e) for e, _ in s["members"])
        nlls = ", ".join(f"{n:.4f}" for _, n in s["members"])
        rows.append(f"| {arm} (elastic {ARMS[arm]:g}) | {errors} | {nlls} | {s['average']} |")
    text = "\n".join(
        [
            "## Elastic distortion: A/B on the validation split",
            "",
            f"`python benchmarks/augment_ab.py --epochs {args.epochs} --seeds {args.seeds}` on "
            f"{hardware()}, {time.strftime('%Y-%m-%d')} ({minutes:.0f} min this run). One "
            f"configuration of the full preset's space, {args.seeds} hold-out members per arm, "
            f"{args.epochs} epochs each on 55,000 images; scored on the "
            f"{scores['affine']['val_images']:,} validation images (the test set is not read).",
            "",
            "| arm | validation errors per member | mean NLL per member | errors of the average |",
            "|---|---|---|---|",
            *rows,
        ]
    )
    print(text)
    update_benchmarks("augment-ab", text)


if __name__ == "__main__":
    main()
