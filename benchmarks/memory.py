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
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
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


@dataclass
class Run:
    curve: list[float]  # MiB of the command's processes after each trial
    seconds: list[float]  # from the end of the trial before (or the start) to this one's end
    pids: list[int]  # the process that trained each trial

    def restarts(self) -> int:
        return sum(a != b for a, b in zip(self.pids[:-1], self.pids[1:], strict=True))

    def restart_seconds(self) -> float:
        """What a fresh process adds to the trial it starts with: the median time between
        trial ends across a change of process, less the median within one."""
        steps = list(zip(self.seconds[1:], self.pids[:-1], self.pids[1:], strict=True))
        across = [s for s, a, b in steps if a != b]
        within = [s for s, a, b in steps if a == b]
        return statistics.median(across) - statistics.median(within) if across else 0.0


def measure(trials: int, recycle: float | None, train_size: int = 600) -> Run:
    """The memory after each trial of a `trials`-trial random search, and its timing.
    `recycle`: the --recycle value, None for the default."""
    with tempfile.TemporaryDirectory() as tmp:
        space = Path(tmp) / "memory.toml"
        space.write_text(SPACE)
        logs = Path(tmp) / "logs"
        cmd = [sys.executable, "-m", "search", "search", "--space", str(space)]
        cmd += ["--tuner", "random", "--max-trials", str(trials), "--logs", str(logs)]
        cmd += ["--train-size", str(train_size), "--val-size", "200"]
        if recycle is not None:
            cmd += ["--recycle", str(recycle)]
        last = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=tmp, stdout=subprocess.DEVNULL)
        oracle = logs / "memory" / "tuner" / "oracle.json"
        run = Run([], [], [])
        while proc.poll() is None:
            if ended(oracle) > len(run.curve):
                run.curve.append(rss_mib(proc.pid))
                now = time.perf_counter()
                run.seconds.append(now - last)
                last = now
            time.sleep(0.02)
        if proc.returncode:
            raise RuntimeError(f"search failed with status {proc.returncode}")
        order = json.loads(oracle.read_text())["end_order"]
        folder = oracle.parent
        run.pids = [
            json.loads((folder / f"trial_{t}" / "stats.json").read_text())["pid"] for t in order
        ]
    return run


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
    one = measure(args.trials, recycle=0)
    fresh = measure(args.trials, recycle=None)
    rss, cost = growth(fresh.curve), fresh.restart_seconds()

    def row(label: str, run: Run, growth_text: str) -> str:
        minutes = sum(run.seconds) / 60
        return f"| {label} | {points(run.curve)} | {growth_text} | {minutes:.1f} |"

    text = "\n".join(
        [
            f"## Memory over a {args.trials}-trial search",
            "",
            f"`python benchmarks/memory.py --trials {args.trials}` on {hardware()}; "
            f"{time.strftime('%Y-%m-%d')}. Resident memory (MiB) of the `digits search` "
            "command's processes after trial N, random tuner, smoke-sized space, 600 "
            "training images: trials of a second or two, where fresh processes cost most.",
            "",
            "| | RSS after trial N (MiB) | last vs trial 5 | minutes |",
            "|---|---|---|---:|",
            row("one process (`--recycle 0`)", one, f"{growth(one.curve):+.1%}"),
            row(f"fresh processes (default; {fresh.restarts()} of them)", fresh, f"**{rss:+.1%}**"),
            "",
            f"Goal: at most +5% after the last trial; {'met' if rss <= 0.05 else 'NOT met'}. "
            f"A fresh process costs {cost:.1f} s (TensorFlow's import, the data, the tuner's "
            f"reload; measured as the extra time of the trials it starts with), "
            f"{cost * fresh.restarts() / args.trials:.2f} s per trial over this search.",
        ]
    )
    print(text)
    update_benchmarks("memory", text)


if __name__ == "__main__":
    main()
