"""Toolkit overhead: the same model and data trained by plain `model.fit` and as a one-trial search.

Both runs train one configuration (no augmentation, so plain Keras can do the same) on the
55,000-image training split for the same epochs, in this one process, alternating. Images per
second count training images over the whole wall time of each: for the search that includes
building the tuner, TensorBoard logs, checkpoints and the oracle's bookkeeping.

    python benchmarks/throughput.py [--epochs 2] [--repeats 1]

Prints a Markdown table and replaces the `throughput` section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
from rich.console import Console

from search import data, space
from search.hypermodel import compile_model, steps_per_epoch
from search.model import build_model
from search.tune import SearchOptions, run_search

SPACE = """
description = "benchmark: one fixed configuration"
[model]
blocks = 2
filters_1 = 32
filters_2 = 64
dense_units = 128
[train]
learning_rate = 1e-3
schedule = "exponential"
batch_size = 128
epochs = {epochs}
"""
BENCHMARKS = Path(__file__).resolve().parent.parent / "BENCHMARKS.md"


def plain_fit(config: dict, split: data.Split, epochs: int) -> float:
    """What a Keras user writes by hand: numpy arrays straight into `model.fit`."""
    model = build_model(config)
    compile_model(model, config, steps_per_epoch(len(split.y_train), 128), epochs)
    y = keras.utils.to_categorical(split.y_train, 10)
    y_val = keras.utils.to_categorical(split.y_val, 10)
    start = time.perf_counter()
    model.fit(
        split.x_train,
        y,
        batch_size=config["batch_size"],
        epochs=epochs,
        validation_data=(split.x_val, y_val),
        verbose=0,
    )
    return time.perf_counter() - start


def toolkit_trial(space_path: Path, logs: Path, epochs: int) -> float:
    opts = SearchOptions(
        study="bench", tuner="random", max_trials=1, root=logs, overwrite=True, patience=epochs
    )
    start = time.perf_counter()
    run_search(space.load(str(space_path)), opts, command="benchmark", console=Console(quiet=True))
    return time.perf_counter() - start


def hardware() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, no GPU"


def update_benchmarks(section: str, text: str) -> None:
    begin, end = f"<!-- {section} -->", f"<!-- /{section} -->"
    doc = BENCHMARKS.read_text() if BENCHMARKS.exists() else "# Benchmarks\n"
    block = f"{begin}\n{text}\n{end}"
    if begin in doc:
        doc = doc[: doc.index(begin)] + block + doc[doc.index(end) + len(end) :]
    else:
        doc = doc.rstrip() + "\n\n" + block + "\n"
    BENCHMARKS.write_text(doc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()

    split = data.split(data.load(), val_size=5000, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        space_path = Path(tmp) / "bench.toml"
        space_path.write_text(SPACE.format(epochs=args.epochs))
        s = space.load(str(space_path))
        config = {p.name: p.fixed for p in s.params.values()}
        images = len(split.y_train) * args.epochs
        plain, toolkit = [], []
        for _ in range(args.repeats):  # alternate, so drift on the machine hits both alike
            plain.append(images / plain_fit(config, split, args.epochs))
            toolkit.append(images / toolkit_trial(space_path, Path(tmp) / "logs", args.epochs))
    best_plain, best_toolkit = max(plain), max(toolkit)
    params = build_model(config).count_params()
    text = "\n".join(
        [
            "## Toolkit overhead: plain `model.fit` vs a one-trial search",
            "",
            f"`python benchmarks/throughput.py --epochs {args.epochs} --repeats {args.repeats}` on "
            f"{hardware()}; {time.strftime('%Y-%m-%d')}. "
            "Model: 2 conv/pool blocks (32, 64 filters), "
            f"dense 128, {params:,} parameters; {len(split.y_train):,} training images, batch 128, "
            f"{args.epochs} epochs, no augmentation; best of {args.repeats}.",
            "",
            "| run | images/s |",
            "|---|---|",
            f"| plain `model.fit` on numpy arrays | {best_plain:,.0f} |",
            f"| `digits search`, one trial (tf.data pipeline, TensorBoard, checkpoints) "
            f"| {best_toolkit:,.0f} |",
            f"| ratio toolkit / plain | {best_toolkit / best_plain:.2f} |",
        ]
    )
    print(text)
    update_benchmarks("throughput", text)


if __name__ == "__main__":
    main()
