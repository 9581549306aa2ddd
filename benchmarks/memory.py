"""Resident memory of a long search, after every trial (keras-tuner #395: growth per trial).

    python benchmarks/memory.py [--trials 200]

Runs `digits search` on a smoke-sized space with a continuous learning rate (so every trial
is new) twice: in one process (`--recycle 0`), then as shipped, where a fresh process carries
on once memory grew by `--recycle` MiB. Reads the resident set size (VmRSS) of the command's
whole process tree each time a trial ends, reports the time each run took (the difference
per trial is what the fresh processes cost) and replaces the `memory` section of
BENCHMARKS.md. Goal: memory after the last trial within 5% of memory after trial 5.
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
    """VmRSS of process `pid` and all its descendants, in MiB (0 for one that just left)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        todo.extend(children.get(p, []))
        try:
            status = Path(f"/proc/{p}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) / 1024
    return total


def ended(oracle: Path) -> int:
    try:
        return len(json.loads(oracle.read_text())["end_order"])
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        return 0


def measure(trials: int, recycle: float | None, train_size: int = 600) -> tuple[list[float], float]:
    """RSS in MiB after each trial of a `trials`-trial random search, and its minutes.
    `recycle`: the --recycle value, None for the default."""
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
        if recycle is not None:
            cmd += ["--recycle", str(recycle)]
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=tmp, stdout=subprocess.DEVNULL)
        oracle = Path(tmp) / "logs" / "memory" / "tuner" / "oracle.json"
        curve: list[float] = []
        while proc.poll() is None:
            if ended(oracle) > len(curve):
                curve.append(rss_mib(proc.pid))
            time.sleep(0.02)
        if proc.returncode:
            raise RuntimeError(f"search failed with status {proc.returncode}")
    return curve, (time.perf_counter() - started) / 60


def growth(curve: list[float]) -> float:
    return curve[-1] / curve[4] - 1


def points(curve: list[float]) -> str:
    marks = {0, 4, 9, 19, 49, 99, 149, len(curve) - 1}
    return ", ".join(f"{i + 1}: {v:.0f}" for i, v in enumerate(curve) if i in marks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=200)
    args = parser.parse_args()
    if why := stale_install():
        parser.error(why)
    one, one_minutes = measure(args.trials, recycle=0)
    fresh, fresh_minutes = measure(args.trials, recycle=None)
    cost = (fresh_minutes - one_minutes) * 60 / args.trials
    rss = growth(fresh)
    text = "\n".join(
        [
            f"## Memory over a {args.trials}-trial search",
            "",
            f"`python benchmarks/memory.py --trials {args.trials}` on {hardware()}; "
            f"{time.strftime('%Y-%m-%d')}. Resident memory (MiB) of the `digits search` "
            "command's processes after trial N, random tuner, smoke-sized space, 600 "
            "training images (trials of about a second, where the fresh processes cost most).",
            "",
            "| | RSS after trial N (MiB) | last vs trial 5 | minutes |",
            "|---|---|---|---:|",
            f"| one process (`--recycle 0`) | {points(one)} | {growth(one):+.1%} "
            f"| {one_minutes:.1f} |",
            f"| fresh processes (default) | {points(fresh)} | **{rss:+.1%}** "
            f"| {fresh_minutes:.1f} |",
            "",
            f"Goal: at most +5% after the last trial; {'met' if rss <= 0.05 else 'NOT met'}. "
            f"The fresh processes cost {cost:+.2f} s per trial here (TensorFlow's import, "
            "the data and the tuner's reload, once per process).",
        ]
    )
    print(text)
    update_benchmarks("memory", text)


if __name__ == "__main__":
    main()
