"""Resident memory of a long search, after every trial (keras-tuner #395: growth per trial).

    python benchmarks/memory.py [--trials 40]

Runs `digits search` on a smoke-sized space with a continuous learning rate (so every trial
is new) as a child process, reads its resident set size (VmRSS) each time a trial ends, and
replaces the `memory` section of BENCHMARKS.md with the curve's key points. Goal: RSS after
the last trial at most 10% above RSS after trial 5.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from throughput import hardware, stale_install, update_benchmarks

SPACE = """
description = "memory benchmark: smoke-sized, every trial new"
[model]
blocks = 1
filters_1 = {choice = [4, 8]}
dense_layers = 0
[train]
learning_rate = {min = 1e-4, max = 1e-2, sampling = "log"}
batch_size = 64
epochs = 1
"""


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def ended(oracle: Path) -> int:
    try:
        return len(json.loads(oracle.read_text())["end_order"])
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        return 0


def measure(trials: int, train_size: int = 600) -> list[float]:
    """RSS in MiB after each trial of a `trials`-trial random search."""
    with tempfile.TemporaryDirectory() as tmp:
        space = Path(tmp) / "memory.toml"
        space.write_text(SPACE)
        cmd = [
            sys.executable,
            "-m",
            "search",
            "search",
            "--space",
            str(space),
            "--tuner",
            "random",
            "--max-trials",
            str(trials),
            "--train-size",
            str(train_size),
            "--val-size",
            "200",
            "--logs",
            str(Path(tmp) / "logs"),
        ]
        proc = subprocess.Popen(cmd, cwd=tmp, stdout=subprocess.DEVNULL)
        oracle = Path(tmp) / "logs" / "memory" / "tuner" / "oracle.json"
        curve: list[float] = []
        while proc.poll() is None:
            if ended(oracle) > len(curve):
                curve.append(rss_mib(proc.pid))
            time.sleep(0.02)
        if proc.returncode:
            raise RuntimeError(f"search failed with status {proc.returncode}")
    return curve


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=40)
    args = parser.parse_args()
    if why := stale_install():
        parser.error(why)
    started = time.perf_counter()
    curve = measure(args.trials)
    minutes = (time.perf_counter() - started) / 60
    at5, last = curve[4], curve[-1]
    growth = last / at5 - 1
    points = ", ".join(
        f"{i + 1}: {v:.0f}"
        for i, v in enumerate(curve)
        if i in (0, 4, 9, 19, 29) or i == len(curve) - 1
    )
    text = "\n".join(
        [
            f"## Memory over a {args.trials}-trial search",
            "",
            f"`python benchmarks/memory.py --trials {args.trials}` on {hardware()}; "
            f"{time.strftime('%Y-%m-%d')}; {minutes:.1f} min. Resident memory (MiB) of the "
            "`digits search` process after trial N, random tuner, smoke-sized space, 600 "
            "training images.",
            "",
            f"RSS after trial {points}.",
            "",
            f"**After trial {len(curve)}: {growth:+.1%} against trial 5** (goal: at most +10%; "
            f"{'met' if growth <= 0.10 else 'NOT met'}).",
        ]
    )
    print(text)
    update_benchmarks("memory", text)


if __name__ == "__main__":
    main()
