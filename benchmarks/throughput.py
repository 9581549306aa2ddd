"""Throughput: one model trained by plain `model.fit`, as a one-trial search, and in PyTorch.

All runs train the quick preset's model family (32C3-32C3-P-64C3-64C3-P-128, batch norm,
dropout; no augmentation, so plain Keras and PyTorch do the same work) on the 55,000-image
training split for the same epochs, with a validation pass after each, in this one process,
alternating, `--repeats` times. Every epoch is timed end to end (from the end of the one
before, so it carries its checkpoint and log writes); the first epoch of each run carries
tracing and start-up and is left out, and the table gives the median of the other epochs
with their range, and each run's ratio to the plain `model.fit` run of its repeat. Plain
`model.fit` on numpy arrays feeds itself through tf.data with autotuning on, so some of its
epochs start with seconds of idle waiting (BENCHMARKS.md, "the two speeds"); the toolkit
turns autotuning off. Plain `model.fit` uses Keras' own `BatchNormalization`; the trial the
toolkit's `FusedBatchNormalization` (TensorFlow's fused kernel, same arithmetic), as every
trial and retraining does. The trial's epochs come from
its stats.json. The whole one-trial search (data, tuner, study, TensorBoard, the oracle's
bookkeeping) is compared with a whole `model.fit` call, both with their start-up. The
PyTorch model is translated layer by layer from the Keras one, and trained by a plain loop
over tensors held in memory (`pip install torch==2.13.0` for that row). With `--bf16` the
plain and trial runs are repeated with the space's `precision = "mixed_bfloat16"` (bfloat16
arithmetic, float32 weights): their ratio to the float32 rows says whether it pays here.

    python benchmarks/throughput.py [--epochs 3] [--repeats 3] [--bf16]

Prints a Markdown table and replaces the `throughput` section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import tempfile
import time
from pathlib import Path

from search.quiet import TF_ENV

os.environ.update({**TF_ENV, **os.environ})  # TensorFlow as the toolkit runs it

import keras
from rich.console import Console

from search import data, space
from search.hypermodel import compile_model, make_dataset, schedule_callbacks, steps_per_epoch
from search.model import build_model
from search.options import SearchOptions
from search.study import write_atomic
from search.tune import run_search

SPACE = """
description = "benchmark: the quick family, one fixed configuration"
[model]
blocks = 2
convs_per_block = 2
filters_1 = 32
filters_2 = 64
padding = "valid"
batch_norm = true
dropout_conv = 0.25
dense_units = 128
dropout_dense = 0.3
[train]
learning_rate = 1e-3
schedule = "exponential"
batch_size = 128
epochs = {epochs}
precision = "{precision}"
"""
ROOT = Path(__file__).resolve().parent.parent  # the checkout
BENCHMARKS = ROOT / "BENCHMARKS.md"
# The space's `precision` values, and the suffix of their rows' keys.
PRECISIONS = {"float32": "", "mixed_bfloat16": "_bf16"}
# /proc/cpuinfo flags, widest first, and how the tables name them.
VECTOR_ISAS = (("amx_tile", "AMX"), ("avx512f", "AVX-512"), ("avx2", "AVX2"))


class EpochClock(keras.callbacks.Callback):
    """Each epoch's seconds, end to end, timed as the toolkit's trials time theirs, and the
    process CPU seconds it used (all threads)."""

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.seconds: list[float] = []
        self.cpu_seconds: list[float] = []
        self.mark, self.cpu_mark = time.perf_counter(), time.process_time()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        now, cpu = time.perf_counter(), time.process_time()
        self.seconds.append(now - self.mark)
        self.cpu_seconds.append(cpu - self.cpu_mark)
        self.mark, self.cpu_mark = now, cpu


def plain_fit(config: dict, split: data.Split, epochs: int) -> tuple[float, list[float]]:
    """What a Keras user writes by hand: numpy arrays straight into `model.fit`.

    Returns the seconds of the whole `fit` call and of each of its epochs.
    """
    model = build_model(config)
    compile_model(model, config, steps_per_epoch(len(split.y_train), 128), epochs)
    y = keras.utils.to_categorical(split.y_train, 10)
    y_val = keras.utils.to_categorical(split.y_val, 10)
    clock = EpochClock()
    start = time.perf_counter()
    model.fit(
        split.x_train,
        y,
        batch_size=config["batch_size"],
        epochs=epochs,
        validation_data=(split.x_val, y_val),
        callbacks=[clock, *schedule_callbacks(config, epochs)],
        verbose=0,
    )
    return time.perf_counter() - start, clock.seconds


def toolkit_trial(
    space_path: Path, logs: Path, epochs: int, images: int | None = None
) -> tuple[float, list[float]]:
    """Seconds of the whole one-trial search, and of each epoch of its trial (stats.json);
    `images`: training images per epoch (default: the whole training split)."""
    opts = SearchOptions(
        study="bench",
        tuner="random",
        max_trials=1,
        train_size=images,
        root=logs,
        overwrite=True,
        patience=epochs,
    )
    start = time.perf_counter()
    run_search(space.load(str(space_path)), opts, command="benchmark", console=Console(quiet=True))
    whole = time.perf_counter() - start
    stats = json.loads(next((logs / "bench" / "tuner").glob("trial_*/stats.json")).read_text())
    return whole, stats["epoch_seconds"]


def pipeline_cpu_seconds(config: dict, split: data.Split) -> float:
    """CPU seconds (all threads) the trial's input pipeline spends on one epoch, no model."""
    batches = make_dataset(split.x_train, split.y_train, config["batch_size"], config, seed=0)
    for _ in batches.take(1):  # builds the pipeline's functions before timing
        pass
    start = time.process_time()
    for _ in batches:
        pass
    return time.process_time() - start


def forward_flops(model: keras.Model) -> int:
    """Multiply-adds x 2 of the convolutions and dense layers for one image (the rest of the
    layers, batch norm, ReLU, pooling, cost under 1%)."""
    flops = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            _, h, w, c_out = layer.output.shape
            kh, kw = layer.kernel_size
            flops += 2 * h * w * kh * kw * layer.input.shape[-1] * c_out
        elif isinstance(layer, keras.layers.Dense):
            flops += 2 * layer.input.shape[-1] * layer.units
    return flops


def torch_twin(model: keras.Model):
    """The same network in PyTorch, layer for layer (NCHW; softmax left to the loss)."""
    import torch
    from torch import nn

    class Scale(nn.Module):
        def forward(self, x):
            return x[:, None] / 255.0

    mods: list = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.Rescaling):
            mods.append(Scale())
        elif isinstance(layer, keras.layers.Conv2D):
            mods.append(
                nn.Conv2d(
                    layer.input.shape[-1],
                    layer.filters,
                    layer.kernel_size,
                    stride=layer.strides,
                    padding=0 if layer.padding == "valid" else layer.kernel_size[0] // 2,
                    bias=layer.use_bias,
                )
            )
        elif isinstance(layer, keras.layers.BatchNormalization):
            bn = nn.BatchNorm2d if len(layer.input.shape) == 4 else nn.BatchNorm1d
            mods.append(bn(layer.input.shape[-1], momentum=1 - layer.momentum))
        elif isinstance(layer, keras.layers.Activation):
            mods.append(nn.ReLU())
        elif isinstance(layer, keras.layers.MaxPooling2D):
            mods.append(nn.MaxPool2d(layer.pool_size))
        elif isinstance(layer, keras.layers.Dropout):
            mods.append(nn.Dropout(layer.rate))
        elif isinstance(layer, keras.layers.Flatten):
            mods.append(nn.Flatten())
        elif isinstance(layer, keras.layers.Dense):
            mods.append(nn.Linear(layer.input.shape[-1], layer.units, bias=layer.use_bias))
    twin = nn.Sequential(*mods)
    keras_params = model.count_params() - sum(  # Keras counts BN's moving statistics
        int(w.shape[0]) for w in model.non_trainable_weights
    )
    assert sum(p.numel() for p in twin.parameters()) == keras_params, "not the same network"
    torch.set_num_threads(os.cpu_count() or 1)
    return twin


def torch_fit(model: keras.Model, split: data.Split, epochs: int, batch: int) -> list[float]:
    """A plain PyTorch training loop: shuffled batches of in-memory tensors, Adam, and a
    validation pass after each epoch, as `model.fit` does. Returns each epoch's seconds."""
    import torch

    twin = torch_twin(model)
    x = torch.from_numpy(split.x_train.astype("float32"))
    y = torch.from_numpy(split.y_train.astype("int64"))
    x_val = torch.from_numpy(split.x_val.astype("float32"))
    optimizer = torch.optim.Adam(twin.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    seconds = []
    for _ in range(epochs):
        start = time.perf_counter()
        twin.train()
        for idx in torch.randperm(len(y)).split(batch):
            optimizer.zero_grad(set_to_none=True)
            loss_fn(twin(x[idx]), y[idx]).backward()
            optimizer.step()
        twin.eval()
        with torch.no_grad():
            for chunk in x_val.split(1000):
                twin(chunk)
        seconds.append(time.perf_counter() - start)
    return seconds


def cpuinfo() -> tuple[str, set[str]]:
    """The CPU's model name and instruction flags, as /proc/cpuinfo lists them (its first
    core's; elsewhere the platform's name and no flags)."""
    cpu, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    return cpu, flags


def bf16_flags() -> str:
    """The CPU's bfloat16 instructions, as /proc/cpuinfo lists them."""
    return ", ".join(sorted(cpuinfo()[1] & {"amx_bf16", "avx512_bf16"}))


def stale_install() -> str | None:
    """Why the `search` package Python imports is not this checkout's, or None.

    The benchmarks run `python -m search` in folders of their own, so they get the installed
    package: after search/ or spaces/ change, a non-editable install still runs the old code.
    """
    installed = Path(space.__file__).parent
    if installed == ROOT / "search":
        return None
    pairs = [
        (src, installed / src.relative_to(ROOT / "search"))
        for src in (ROOT / "search").rglob("*.py")
    ]
    # The spaces where the installed package looks for them (a wheel ships them inside it).
    builtin = space.builtin_spaces()
    pairs += [(src, builtin.get(src.stem)) for src in (ROOT / "spaces").glob("*.toml")]
    changed = [
        str(src.relative_to(ROOT))
        for src, dst in pairs
        if dst is None or not dst.is_file() or dst.read_bytes() != src.read_bytes()
    ]
    if not changed:
        return None
    more = f" and {len(changed) - 3} more" if len(changed) > 3 else ""
    return (
        f"the installed search package ({installed}) does not match this checkout's "
        f"{', '.join(changed[:3])}{more}: run `pip install .` first"
    )


def hardware() -> str:
    """The CPU, its widest vector instructions and its cores, for the tables.

    The VMs all call themselves "AMD EPYC" or "Intel(R) Xeon(R) Processor", yet one AMD EPYC
    retrained the full preset's members at about 2,300 images/s and another, with AVX2 and no
    AVX-512, at about 650 (BENCHMARKS.md): the vector width tells such machines apart.
    """
    cpu, flags = cpuinfo()
    isa = next((name for flag, name in VECTOR_ISAS if flag in flags), None)
    return f"{cpu}{f' ({isa})' if isa else ''}, {os.cpu_count()} cores, no GPU{held_back()}"


def held_back() -> str:
    """What holds this process below its machine, so that a slower machine emulated here
    (a CPU quota, oneDNN held to older instructions or off) is never read as this one."""
    held = []
    if quota := cpu_quota():
        held.append(f"held to {quota:.1f} CPUs by a cgroup quota")
    if isa := os.environ.get("ONEDNN_MAX_CPU_ISA"):
        held.append(f"oneDNN held to {isa}")
    # Unset, the toolkit turns oneDNN on (search.quiet.TF_ENV).
    if os.environ.get("TF_ENABLE_ONEDNN_OPTS", "1").lower() in ("0", "false"):
        held.append("oneDNN off (Eigen kernels)")
    return "".join(f", {h}" for h in held)


def held_command(machine: str) -> str:
    """What a command needs before it to run as held as `machine` (a `hardware()` line) was:
    `held_back`'s words read back, so a table's command reruns an emulated CPU as it ran."""
    isa = re.search(r"oneDNN held to (\w+)", machine)
    cpus = re.search(r"held to ([\d.]+) CPUs", machine)
    return (
        ("TF_ENABLE_ONEDNN_OPTS=0 " if "oneDNN off" in machine else "")
        + (f"ONEDNN_MAX_CPU_ISA={isa[1]} " if isa else "")
        + (f"bash benchmarks/held.sh {cpus[1]} " if cpus else "")
    )


def cpu_quota() -> float | None:
    """The CPUs this process's cgroup allows it (cgroup v1 or v2), or None: no quota."""
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            if controllers == "":  # v2: "max 100000" or "150000 100000"
                quota, period = (
                    (Path("/sys/fs/cgroup") / path.lstrip("/") / "cpu.max").read_text().split()
                )
            elif "cpu" in controllers.split(","):
                folder = Path("/sys/fs/cgroup/cpu") / path.lstrip("/")
                quota = (folder / "cpu.cfs_quota_us").read_text().strip()
                period = (folder / "cpu.cfs_period_us").read_text().strip()
            else:
                continue
            if quota not in ("max", "-1"):
                return int(quota) / int(period)
    except (OSError, ValueError):
        pass
    return None


def update_benchmarks(section: str, text: str) -> None:
    begin, end = f"<!-- {section} -->", f"<!-- /{section} -->"
    doc = BENCHMARKS.read_text() if BENCHMARKS.exists() else "# Benchmarks\n"
    block = f"{begin}\n{text}\n{end}"
    if begin in doc:
        doc = doc[: doc.index(begin)] + block + doc[doc.index(end) + len(end) :]
    else:
        doc = doc.rstrip() + "\n\n" + block + "\n"
    write_atomic(BENCHMARKS, doc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3, help="per run; the first is left out")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--bf16", action="store_true", help="add mixed_bfloat16 rows")
    args = parser.parse_args()
    if why := stale_install():
        parser.error(why)
    if args.epochs < 2:
        parser.error("--epochs must be at least 2: each run's first epoch carries tracing")

    split = data.split(data.load(), val_size=5000, seed=0)
    try:
        import torch
    except ImportError:
        torch = None
    precisions = {k: v for k, v in PRECISIONS.items() if args.bf16 or not v}
    # Training images per second of every steady epoch (each run's first left out), and of
    # whole runs with their start-up.
    per_epoch = len(split.y_train)
    steady: dict[str, list[float]] = {}
    whole: dict[str, list[float]] = {"plain": [], "search": []}
    # Each repeat's ratio to the plain run beside it: the machine's speed drifts between
    # levels for minutes at a time, and a ratio of neighbours cancels most of that drift.
    paired: dict[str, list[float]] = {}

    def record(key: str, epoch_seconds: list[float], base: str | None = None) -> None:
        rates = [per_epoch / s for s in epoch_seconds[1:]]
        steady.setdefault(key, []).extend(rates)
        if base is not None:  # the plain run just before, of the same length
            ratio = statistics.median(rates) / statistics.median(steady[base][-len(rates) :])
            paired.setdefault(key, []).append(ratio)

    with tempfile.TemporaryDirectory() as tmp:
        spaces, configs = {}, {}
        for precision, suffix in precisions.items():
            spaces[suffix] = Path(tmp) / f"bench{suffix}.toml"
            spaces[suffix].write_text(SPACE.format(epochs=args.epochs, precision=precision))
            s = space.load(str(spaces[suffix]))
            configs[suffix] = {p.name: p.fixed for p in s.params.values()}
        model = build_model(configs[""])
        images = per_epoch * args.epochs
        for repeat in range(args.repeats):  # alternate, so drift on the machine hits all alike
            for suffix, config in configs.items():
                seconds, epochs = plain_fit(config, split, args.epochs)
                record("plain" + suffix, epochs, base="plain" if suffix else None)
                searched, epochs = toolkit_trial(spaces[suffix], Path(tmp) / "logs", args.epochs)
                record("trial" + suffix, epochs, base="plain")
                if not suffix:
                    whole["plain"].append(images / seconds)
                    whole["search"].append(images / searched)
                    paired.setdefault("search", []).append(seconds / searched)
            if torch is not None:
                record("torch", torch_fit(model, split, args.epochs, 128), base="plain")
            print(f"repeat {repeat + 1}/{args.repeats} done", flush=True)
    # Training costs about three forward passes: the forward, and two for the gradients.
    train_flops = 3 * forward_flops(model)
    # The quick space's augmentation (rotation 10, zoom 0.1, shift 0.1) on top of the batching.
    augmented = {**configs[""], "rotation": 10.0, "zoom": 0.1, "translate": 0.1}
    feed = {"plain": pipeline_cpu_seconds(configs[""], split)}
    feed["aug"] = pipeline_cpu_seconds(augmented, split)

    def row(name: str, key: str, runs: dict[str, list[float]] = steady) -> str:
        if key not in runs:
            return f"| {name} | not installed | | | | |"
        mid = statistics.median(runs[key])
        spread = f"{min(runs[key]):,.0f}-{max(runs[key]):,.0f} ({len(runs[key])})"
        pairs = paired.get(key)
        ratio = (
            f"{statistics.median(pairs):.2f} ({min(pairs):.2f}-{max(pairs):.2f})"
            if pairs
            else "1.00"
        )
        pooled = mid / statistics.median(runs["plain"])
        gflops = mid * train_flops / 1e9
        return f"| {name} | {mid:,.0f} | {spread} | {gflops:.1f} | {ratio} | {pooled:.2f} |"

    version = f"PyTorch {torch.__version__}" if torch is not None else "PyTorch"
    rows = [
        row("plain `model.fit` on numpy arrays", "plain"),
        row("`digits search`: the trial's `fit` (tf.data, TensorBoard, checkpoints)", "trial"),
        row(f"plain {version} loop (`torch.set_num_threads(2)`)", "torch"),
    ]
    if args.bf16:
        rows += [
            row("plain `model.fit`, in mixed_bfloat16", "plain_bf16"),
            row("`digits search`: the trial's `fit`, in mixed_bfloat16", "trial_bf16"),
        ]
    rows.append(
        row(
            "whole `digits search` (data, tuner, study, one trial) / whole `model.fit` call, "
            "start-up included",
            "search",
            whole,
        )
    )
    flag = " --bf16" if args.bf16 else ""
    text = "\n".join(
        [
            "## Throughput: plain Keras, a one-trial search, plain PyTorch",
            "",
            f"`python benchmarks/throughput.py --epochs {args.epochs} --repeats {args.repeats}"
            f"{flag}` on {hardware()}; {time.strftime('%Y-%m-%d')}. "
            "Model: the quick family, 32C3-32C3-P-64C3-64C3-P-128 with batch norm and dropout, "
            f"{model.count_params():,} parameters, {forward_flops(model) / 1e6:.1f} MFLOP per "
            f"image forward (about {train_flops / 1e6:.0f} MFLOP per trained image); "
            f"{per_epoch:,} training images, batch 128, {args.epochs} epochs per run with a "
            f"validation pass after each, no augmentation; {args.repeats} runs of each, "
            "alternating in one process. Images/s: the median over every run's epochs after "
            "its first (which carries tracing), with their range and count; the last row "
            "compares whole runs, start-up included. Ratio to the plain run beside it: each "
            "run's median divided by that of the plain `model.fit` run of the same repeat, "
            "then the median over repeats (this machine's speed sits at one level for minutes "
            "at a time, which neighbours share); ratio of the medians: over all runs pooled.",
            "",
            "| run | images/s (median) | range (epochs) | GFLOP/s | ratio to the plain run "
            "beside it (median of repeats, range) | ratio of the medians |",
            "|---|---|---|---|---|---|",
            *rows,
            "",
            "The trial's input pipeline alone (`make_dataset`, one epoch, no model) costs "
            f"{feed['plain']:.2f} CPU seconds, {feed['aug']:.2f} with the quick space's "
            f"augmentation, against {per_epoch / statistics.median(steady['trial']):.0f} s "
            "of wall time per trial epoch on two cores: it is not what separates the rows.",
            "",
            f"CPU flags for bfloat16: {bf16_flags() or 'none'} (without them bfloat16 is "
            "emulated, and slow).",
        ]
    )
    print(text)
    update_benchmarks("throughput", text)


if __name__ == "__main__":
    main()
