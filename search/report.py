"""Error analysis of test predictions, as the original write-up did by hand.

A confusion-matrix image, a grid of the misclassified digits (true label, prediction,
confidence), and the most confused pairs (4/9, 3/5, ...) as a table; the pictures also go to
TensorBoard's image tab.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; no display here or in CI

import matplotlib.pyplot as plt
import numpy as np

from search.data import NUM_CLASSES
from search.importance import analyse
from search.results import columns
from search.study import Study, write_atomic

MAX_SHOWN = 100  # misclassified digits in the grid


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    cm = np.zeros((NUM_CLASSES, NUM_CLASSES), dtype=int)
    np.add.at(cm, (labels, predicted), 1)
    return cm


def confused_pairs(cm: np.ndarray, top: int = 10) -> list[dict[str, Any]]:
    """Digit pairs by errors in either direction, most confused first."""
    pairs = []
    for a in range(NUM_CLASSES):
        for b in range(a + 1, NUM_CLASSES):
            if cm[a, b] + cm[b, a]:
                pairs.append(
                    {
                        "pair": f"{a}/{b}",
                        "errors": int(cm[a, b] + cm[b, a]),
                        f"{a} as {b}": int(cm[a, b]),
                        f"{b} as {a}": int(cm[b, a]),
                    }
                )
    return sorted(pairs, key=lambda p: -p["errors"])[:top]


def plot_confusion(cm: np.ndarray, path: Path, title: str) -> None:
    off = cm.copy()
    np.fill_diagonal(off, 0)  # the diagonal would drown the errors in colour
    fig, ax = plt.subplots(figsize=(6.4, 5.6), dpi=110)
    im = ax.imshow(off, cmap="Reds")
    for (i, j), n in np.ndenumerate(cm):
        if n:
            ax.text(
                j,
                i,
                str(n),
                ha="center",
                va="center",
                fontsize=7,
                color="grey" if i == j else ("white" if off[i, j] > off.max() / 2 else "black"),
            )
    ax.set(
        xticks=range(NUM_CLASSES),
        yticks=range(NUM_CLASSES),
        xlabel="predicted",
        ylabel="true",
        title=title,
    )
    fig.colorbar(im, ax=ax, label="errors (diagonal: correct, in grey)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_misclassified(
    x: np.ndarray, labels: np.ndarray, probs: np.ndarray, path: Path, title: str
) -> int:
    """Grid of misclassified digits, least confident mistakes last; returns how many shown."""
    predicted = probs.argmax(axis=1)
    wrong = np.flatnonzero(predicted != labels)
    wrong = wrong[np.argsort(-probs[wrong, predicted[wrong]])][:MAX_SHOWN]
    cols = 10
    rows = max(1, math.ceil(len(wrong) / cols))
    fig, axes = plt.subplots(
        rows, cols, figsize=(cols * 1.1, rows * 1.3 + 0.5), dpi=100, squeeze=False
    )
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, wrong, strict=False):
        ax.imshow(x[i], cmap="gray_r")
        ax.set_title(f"{labels[i]}→{predicted[i]} {probs[i, predicted[i]]:.0%}", fontsize=8)
    fig.suptitle(f"{title} (true→predicted, confidence)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return len(wrong)


def write_report(
    folder: Path,
    x: np.ndarray,
    labels: np.ndarray,
    probs: np.ndarray,
    title: str,
    tensorboard_dir: Path | None = None,
) -> dict[str, Any]:
    """Write the pictures and the confused-pairs table to `folder`; return the summary."""
    folder.mkdir(parents=True, exist_ok=True)
    cm = confusion_matrix(labels, probs.argmax(axis=1))
    plot_confusion(cm, folder / "confusion_matrix.png", f"{title}: confusion matrix")
    shown = plot_misclassified(
        x, labels, probs, folder / "misclassified.png", f"{title}: misclassified test digits"
    )
    pairs = confused_pairs(cm)
    summary = {
        "confusion_matrix": cm.tolist(),
        "most_confused_pairs": pairs,
        "misclassified_shown": shown,
    }
    write_atomic(folder / "errors.json", json.dumps(summary, indent=1) + "\n")
    lines = ["| pair | errors | detail |", "|---|---|---|"]
    for p in pairs:
        a, b = p["pair"].split("/")
        lines.append(
            f"| {p['pair']} | {p['errors']} | {p[f'{a} as {b}']} {a}→{b}, "
            f"{p[f'{b} as {a}']} {b}→{a} |"
        )
    write_atomic(folder / "confused_pairs.md", "\n".join(lines) + "\n")
    if tensorboard_dir is not None:
        log_images(tensorboard_dir, [folder / "confusion_matrix.png", folder / "misclassified.png"])
    return summary


def log_images(logdir: Path, pngs: list[Path]) -> None:
    """Put PNG files into TensorBoard's image tab."""
    import tensorflow as tf

    writer = tf.summary.create_file_writer(str(logdir))
    with writer.as_default():
        for png in pngs:
            image = tf.io.decode_png(tf.io.read_file(str(png)), channels=3)
            tf.summary.image(png.stem, image[None], step=0)
    writer.close()


def importance_report(study: Study, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Which hyperparameters of `rows` (the study's trials) matter: `importance.analyse`'s
    ranking and plots in `study.dir / "importance"`, the plots also in TensorBoard."""
    params = study.read()["space"]["params"]
    log_params = {name for name, text in params.items() if text.endswith(" log")}
    names = [c for c in columns(rows) if c in params]
    folder = study.dir / "importance"
    summary = analyse(rows, names, log_params, folder)
    if summary["ranking"]:
        log_images(folder, [Path(p) for p in summary["plots"]])
    return summary
