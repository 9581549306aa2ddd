"""oneDNN or Eigen: the speed of a trial's training under TensorFlow's two sets of CPU kernels.

TensorFlow's Linux wheels turn oneDNN's kernels on by default only on CPUs with VNNI,
bfloat16 or AMX instructions; elsewhere (an AVX2-only CPU) they train on Eigen's. The
toolkit turns oneDNN on everywhere (`search.quiet.TF_ENV`). Each row trains a one-trial
search of the quick family (`throughput.SPACE`: no augmentation) in its own process, the
kernels chosen by its environment; `ONEDNN_MAX_CPU_ISA=AVX2` holds oneDNN to the
instructions an AVX2-only CPU has, which is how that CPU's row is read here. The rows
alternate, `--repeats` times; each run's first epoch (tracing) is left out.

    python benchmarks/onednn.py [--images 20000] [--epochs 3] [--repeats 3]

Prints a Markdown table and replaces the `onednn` section of BENCHMARKS.md (`onednn-held`
for a run held below its machine by `benchmarks/held.sh`).
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
from pathlib import Path

from throughput import (
    SPACE,
    cpuinfo,
    hardware,
    held_back,
    held_command,
    stale_install,
    toolkit_trial,
    update_benchmarks,
)

# The CPU flags with which TensorFlow turns oneDNN on by itself (its DefaultOneDnnPolicy).
DEFAULT_ON = ("avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile", "amx_int8", "amx_bf16")
KERNELS = {  # row name: the environment its process trains in
    "Eigen (`TF_ENABLE_ONEDNN_OPTS=0`)": {"TF_ENABLE_ONEDNN_OPTS": "0"},
    "oneDNN held to AVX2 (`ONEDNN_MAX_CPU_ISA=AVX2`)": {
        "TF_ENABLE_ONEDNN_OPTS": "1",
        "ONEDNN_MAX_CPU_ISA": "AVX2",
    },
    "oneDNN, this CPU's instructions (the toolkit's default)": {"TF_ENABLE_ONEDNN_OPTS": "1"},
}


def child(images: int, epochs: int) -> None:
    """One one-trial search in this process; prints its epochs' seconds as JSON."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.toml"
        path.write_text(SPACE.format(epochs=epochs, precision="float32"))
        _, seconds = toolkit_trial(path, Path(tmp) / "logs", epochs, images)
        print(json.dumps(seconds))


def run(env: dict[str, str], images: int, epochs: int) -> list[float]:
    """Steady images/s of each epoch after the first, from a fresh process in `env`."""
    clean = {k: v for k, v in os.environ.items() if k != "ONEDNN_MAX_CPU_ISA"}
    cmd = [sys.executable, __file__, "--child", "--images", str(images), "--epochs", str(epochs)]
    out = subprocess.run(cmd, env={**clean, **env}, capture_output=True, text=True, check=True)
    seconds = json.loads(out.stdout.strip().splitlines()[-1])
    return [images / s for s in seconds[1:]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20000, help="training images per epoch")
    parser.add_argument("--epochs", type=int, default=3, help="per run; the first is left out")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.images, args.epochs)
    if why := stale_install():
        parser.error(why)
    if args.epochs < 2:
        parser.error("--epochs must be at least 2: each run's first epoch carries tracing")
    start = time.perf_counter()
    rates: dict[str, list[float]] = {name: [] for name in KERNELS}
    paired: dict[str, list[float]] = {name: [] for name in KERNELS}
    eigen = next(iter(KERNELS))
    for repeat in range(args.repeats):  # alternate, so drift on the machine hits all alike
        for name, env in KERNELS.items():
            steady = run(env, args.images, args.epochs)
            rates[name].extend(steady)
            base = rates[eigen][-len(steady) :]  # the Eigen run of this repeat
            paired[name].append(statistics.median(steady) / statistics.median(base))
        print(f"repeat {repeat + 1}/{args.repeats} done", flush=True)
    _, flags = cpuinfo()
    by_default = [f for f in DEFAULT_ON if f in flags]
    default = f"on (flags {', '.join(by_default)})" if by_default else "off (none of its flags)"
    rows = [
        f"| {name} | {statistics.median(r):,.0f} | {min(r):,.0f}-{max(r):,.0f} ({len(r)}) | "
        f"{statistics.median(paired[name]):.2f} "
        f"({min(paired[name]):.2f}-{max(paired[name]):.2f}) |"
        for name, r in rates.items()
    ]
    machine, held = hardware(), held_back()
    text = "\n".join(
        [
            "### The same, held below this machine"
            if held
            else "## oneDNN or Eigen: TensorFlow's CPU kernels",
            "",
            f"`{held_command(machine)}python benchmarks/onednn.py --images {args.images} "
            f"--epochs {args.epochs} --repeats {args.repeats}` on {machine}; "
            f"{time.strftime('%Y-%m-%d')}; "
            f"{(time.perf_counter() - start) / 60:.0f} min. A one-trial search of the quick "
            f"family (no augmentation), {args.images:,} training images per epoch, batch 128, "
            f"{args.epochs} epochs per run in a fresh process, the rows alternating; every "
            "epoch after a run's first. TensorFlow's own default on this CPU: oneDNN "
            f"{default}.",
            "",
            "| kernels | images/s (median) | range (epochs) | ratio to the Eigen run beside it "
            "(median of repeats, range) |",
            "|---|---|---|---|",
            *rows,
        ]
    )
    print(text)
    # Held below its machine (benchmarks/held.sh), a run emulates another CPU: its own table.
    update_benchmarks("onednn-held" if held else "onednn", text)


if __name__ == "__main__":
    main()
