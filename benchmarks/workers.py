"""Trials per hour: one process vs a chief with 1 and 2 local workers, same search.

    python benchmarks/workers.py [--trials 8] [--train-size 5000]

Each search runs from an empty folder as `digits search` (random tuner, the quick space with
one epoch per trial) and is timed by the wall clock; trials per hour = trials / wall time.
The distributed runs include starting the chief and the workers (one TensorFlow import each)
and keras-tuner's chief shutdown poll (up to 20 s). Replaces the `workers` section of
BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time

from throughput import hardware, stale_install, update_benchmarks


def timed(trials: int, train_size: int, workers: int | None) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [
            sys.executable,
            "-m",
            "search",
            "search",
            "--space",
            "quick",
            "--tuner",
            "random",
            "--max-trials",
            str(trials),
            "--max-epochs",
            "1",
            "--train-size",
            str(train_size),
            "--logs",
            f"{tmp}/logs",
        ]
        if workers:
            cmd += ["--workers", str(workers)]
        start = time.perf_counter()
        subprocess.run(cmd, cwd=tmp, check=True, stdout=subprocess.DEVNULL)
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--train-size", type=int, default=5000)
    args = parser.parse_args()
    if why := stale_install():
        parser.error(why)
    rows = []
    for label, workers in (
        ("one process", None),
        ("chief + 1 worker", 1),
        ("chief + 2 workers", 2),
    ):
        seconds = timed(args.trials, args.train_size, workers)
        rows.append(f"| {label} | {seconds:.0f} | {args.trials / seconds * 3600:.0f} |")
    text = "\n".join(
        [
            "## Distributed search: trials per hour on one machine",
            "",
            f"`python benchmarks/workers.py --trials {args.trials} --train-size {args.train_size}` "
            f"on {hardware()}; {time.strftime('%Y-%m-%d')}. Random search over the quick space, "
            f"{args.trials} trials of one epoch on {args.train_size:,} images (plus 5,000 "
            "validation images), wall time of the whole command.",
            "",
            "| run | seconds | trials per hour |",
            "|---|---|---|",
            *rows,
            "",
            "Two workers share the same two cores that one process already keeps busy (TensorFlow "
            "uses both for each step), so little or no gain is expected here; workers pay off with "
            "one machine (or GPU) each. See docs/scaling.md.",
        ]
    )
    print(text)
    update_benchmarks("workers", text)


if __name__ == "__main__":
    main()
