"""The two speeds: tf.data's autotuning and the idle seconds at the start of an epoch.

Trains the throughput benchmark's model (benchmarks/throughput.py) for `--epochs` short epochs
of `--images` training images each, three ways, alternating, `--repeats` times in one process:
plain `model.fit` on numpy arrays (Keras feeds them through tf.data, autotuning on), the
toolkit's `make_dataset` with tf.data's autotuning switched back on (as tf.data has it by
default), and `make_dataset` as it is (autotuning off). For every epoch after each run's
first it records images/s and CPU use (process CPU seconds / wall seconds: about 1.85 when
both cores work, lower when the process waits). Validation is left out: only the training
iterator is timed.

    python benchmarks/autotune.py [--images 10000] [--epochs 8] [--repeats 2]

Prints a Markdown table and replaces the `autotune` section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from search.quiet import TF_ENV

os.environ.update({**TF_ENV, **os.environ})  # TensorFlow as the toolkit runs it

import keras
import tensorflow as tf
from throughput import SPACE, EpochClock, hardware, stale_install, update_benchmarks

from search import data, space
from search.hypermodel import compile_model, make_dataset, schedule_callbacks, steps_per_epoch
from search.model import build_model

SLOW = 0.75  # an epoch below this share of the fastest one measured counts as slow


def autotuned(ds: tf.data.Dataset) -> tf.data.Dataset:
    options = tf.data.Options()
    options.autotune.enabled = True
    return ds.with_options(options)


def run(way: str, config: dict, x, y, epochs: int) -> list[tuple[float, float]]:
    """(images/s, CPU use) of each epoch after the first."""
    model = build_model(config)
    compile_model(model, config, steps_per_epoch(len(x), config["batch_size"]), epochs)
    clock = EpochClock()
    if way == "plain":
        labels = keras.utils.to_categorical(y, 10)
        fit = {"x": x, "y": labels, "batch_size": config["batch_size"]}
    else:
        ds = make_dataset(x, y, config["batch_size"], config, seed=0)
        fit = {"x": autotuned(ds) if way == "autotuned" else ds, "shuffle": False}
    callbacks = [clock, *schedule_callbacks(config, epochs)]
    model.fit(**fit, epochs=epochs, callbacks=callbacks, verbose=0)
    epochs_timed = list(zip(clock.seconds, clock.cpu_seconds, strict=True))[1:]
    return [(len(x) / wall, cpu / wall) for wall, cpu in epochs_timed]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10000)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    if why := stale_install():
        parser.error(why)
    started = time.perf_counter()
    split = data.split(data.load(), val_size=5000, seed=0)
    x, y = split.x_train[: args.images], split.y_train[: args.images]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.toml"
        path.write_text(SPACE.format(epochs=args.epochs, precision="float32"))
        config = {p.name: p.fixed for p in space.load(str(path)).params.values()}
    ways = {
        "plain": "plain `model.fit` on numpy arrays (tf.data inside, autotuning on)",
        "autotuned": "`make_dataset` with tf.data's autotuning on",
        "toolkit": "`make_dataset` as it is (autotuning off)",
    }
    epochs: dict[str, list[tuple[float, float]]] = {way: [] for way in ways}
    for repeat in range(args.repeats):
        for way in ways:
            epochs[way] += run(way, config, x, y, args.epochs)
        print(f"repeat {repeat + 1}/{args.repeats} done", flush=True)
    fastest = max(rate for runs in epochs.values() for rate, _ in runs)

    def use(group: list[float]) -> str:
        return f"{statistics.median(group):.2f}" if group else "-"

    rows = []
    for way, name in ways.items():
        rates = [rate for rate, _ in epochs[way]]
        slow = [cpu for rate, cpu in epochs[way] if rate < SLOW * fastest]
        fast = [cpu for rate, cpu in epochs[way] if rate >= SLOW * fastest]
        rows.append(
            f"| {name} | {statistics.median(rates):,.0f} | {statistics.mean(rates):,.0f} | "
            f"{min(rates):,.0f}-{max(rates):,.0f} | {len(slow)} of {len(rates)} | "
            f"{use(fast)} | {use(slow)} |"
        )
    minutes = (time.perf_counter() - started) / 60
    text = "\n".join(
        [
            "## The two speeds: tf.data's autotuning",
            "",
            f"`python benchmarks/autotune.py --images {args.images} --epochs {args.epochs} "
            f"--repeats {args.repeats}` on {hardware()}; {time.strftime('%Y-%m-%d')}; "
            f"{minutes:.0f} min. The throughput model, {args.images:,} training images per "
            "epoch, batch 128, no validation, no augmentation; each way "
            f"{args.repeats} runs of {args.epochs} epochs, alternating in one process; every "
            "epoch after a run's first. Slow: below "
            f"{SLOW:.0%} of the fastest epoch here. CPU use: process CPU seconds per wall "
            "second (2 cores).",
            "",
            "| input | images/s (median) | mean | range | slow epochs | CPU use, other epochs "
            "| CPU use, slow epochs |",
            "|---|---|---|---|---|---|---|",
            *rows,
        ]
    )
    print(text)
    update_benchmarks("autotune", text)


if __name__ == "__main__":
    main()
