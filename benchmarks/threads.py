"""TensorFlow's thread pools on a 2-core CPU: plain `model.fit` speed and its spread.

TensorFlow runs independent ops side by side (the inter-op pool) and splits each op over
the intra-op pool; by default both are as large as the machine has cores. On two cores the
two pools, tf.data's threads and oneDNN can ask for more threads than there are cores.
oneDNN (TensorFlow's CPU kernels for convolutions, matmuls and batch norm) splits each op
into one job per core and by default hands every job to the intra-op pool while the thread
that ran the op waits; `TF_ONEDNN_THREADPOOL_USE_CALLER_THREAD=1` runs the last job on that
thread instead. Each setting trains the throughput benchmark's model
(benchmarks/throughput.py) with plain `model.fit` in a fresh process (the pools are fixed
once TensorFlow starts), alternating, `--repeats` times; the table gives the median and mean
images/s over every epoch after each run's first, their range, and the spread (standard
deviation / mean) that made throughput comparisons between runs so noisy here.

    python benchmarks/threads.py [--epochs 3] [--repeats 2]

Prints a Markdown table and replaces the `threads` section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

# (inter-op threads, intra-op threads, oneDNN's caller thread works); 0 threads keeps
# TensorFlow's default (the cores it sees). (1, 0), (1, 1) and (2, 1) measured 10-36% slower
# than the defaults on an AMD EPYC, so they are left out.
SETTINGS = [(0, 0, 0), (0, 0, 1), (0, 3, 0)]
CALLER_THREAD = "TF_ONEDNN_THREADPOOL_USE_CALLER_THREAD"


def child(inter: int, intra: int, caller: int, epochs: int) -> None:
    """One plain fit with these pools; prints its epochs' seconds as JSON."""
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    os.environ[CALLER_THREAD] = str(caller)  # explicit: the shell's value must not decide
    import tensorflow as tf

    tf.config.threading.set_inter_op_parallelism_threads(inter)
    tf.config.threading.set_intra_op_parallelism_threads(intra)
    from throughput import SPACE, plain_fit

    from search import data, space

    split = data.split(data.load(), val_size=5000, seed=0)
    path = os.path.join(os.environ["BENCH_TMP"], "bench.toml")
    with open(path, "w") as f:
        f.write(SPACE.format(epochs=epochs, precision="float32"))
    config = {p.name: p.fixed for p in space.load(path).params.values()}
    _, seconds = plain_fit(config, split, epochs)
    print(json.dumps({"images": len(split.y_train), "seconds": seconds}))


def label(inter: int, intra: int, caller: int) -> str:
    pools = f"inter-op {inter or 'TF default'}, intra-op {intra or 'TF default'}"
    return pools + (", oneDNN caller thread" if caller else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3, help="per run; the first is left out")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--child", nargs=3, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child, args.epochs)
        return
    from throughput import hardware, stale_install, update_benchmarks

    if why := stale_install():
        parser.error(why)

    rates: dict[tuple[int, int, int], list[float]] = {s: [] for s in SETTINGS}
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "BENCH_TMP": tmp}
        for repeat in range(args.repeats):
            for setting in SETTINGS:
                cmd = [sys.executable, __file__, "--epochs", str(args.epochs)]
                out = subprocess.run(
                    [*cmd, "--child", *map(str, setting)],
                    env=env,
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout
                run = json.loads(out.strip().splitlines()[-1])
                rates[setting] += [run["images"] / s for s in run["seconds"][1:]]
            print(f"repeat {repeat + 1}/{args.repeats} done", flush=True)
    base = statistics.median(rates[SETTINGS[0]])
    rows = []
    for setting, values in rates.items():
        mid = statistics.median(values)
        cv = statistics.stdev(values) / statistics.mean(values) if len(values) > 1 else 0.0
        rows.append(
            f"| {label(*setting)} | {mid:,.0f} | {statistics.mean(values):,.0f} | "
            f"{min(values):,.0f}-{max(values):,.0f} ({len(values)}) | {cv:.0%} | {mid / base:.2f} |"
        )
    text = "\n".join(
        [
            "## TensorFlow's thread pools on this CPU",
            "",
            f"`python benchmarks/threads.py --epochs {args.epochs} --repeats {args.repeats}` on "
            f"{hardware()}; {time.strftime('%Y-%m-%d')}. Plain `model.fit` of the throughput "
            "model (55,000 images, batch 128, validation after each epoch), each setting in a "
            "fresh process, alternating; images/s over every epoch after each run's first.",
            "",
            "| threads | images/s (median) | mean | range (epochs) | spread (sd/mean) "
            "| ratio to TF defaults (medians) |",
            "|---|---|---|---|---|---|",
            *rows,
        ]
    )
    print(text)
    update_benchmarks("threads", text)


if __name__ == "__main__":
    main()
