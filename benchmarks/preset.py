"""Time `digits run --preset NAME` end to end, from an empty folder, and record the result.

    python benchmarks/preset.py quick [--seeds 0 1 2]

Each seed is a fresh run (search, retrain, ensemble, one test evaluation, export) in its own
temporary folder (or --workdir), timed by the wall clock. A run interrupted in --workdir
continues with --resume (every stage of `digits run` resumes); its time is the sum of its
parts, and the table says so. Prints a Markdown table of every kept
run and redraws the summary of BENCHMARKS.md (one row per setup and machine).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

from throughput import ROOT, hardware, held_command, stale_install, update_benchmarks

from search.study import write_atomic

RESULTS = Path(__file__).resolve().parent / "results"
PART_CLOCK = 10  # seconds between writes of the running part's time


def run(preset: str, seed: int, workdir: Path | None, resume: bool = False) -> dict:
    """One run from an empty folder; in `workdir` (kept, e.g. for its report pictures) or a
    temporary one. `resume` continues an interrupted run in `workdir`: its wall time is the
    sum of its parts, each part's time kept in `<study>.parts.json` every few seconds."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = workdir or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        study = f"{preset}-seed{seed}"
        timing = folder / f"{study}.parts.json"
        if (folder / "logs" / study).exists() and not resume:
            raise SystemExit(f"{folder / 'logs' / study} exists: a timed run starts from nothing")
        parts = json.loads(timing.read_text()) if resume and timing.exists() else []
        cmd = [
            sys.executable,
            "-m",
            "search",
            "run",
            "--preset",
            preset,
            "--seed",
            str(seed),
            "--study",
            study,
        ]
        parts.append(0.0)  # this part, in minutes
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=folder)
        while True:
            try:
                proc.wait(timeout=PART_CLOCK)
                break
            except subprocess.TimeoutExpired:
                pass
            finally:  # also when this script is interrupted: the part so far is kept
                parts[-1] = (time.perf_counter() - start) / 60
                write_atomic(timing, json.dumps(parts))
        if proc.returncode:
            raise SystemExit(f"the run failed (status {proc.returncode}); rerun with --resume")
        evaluation = json.loads(
            (folder / "logs" / study / "ensemble" / "evaluation.json").read_text()
        )
        manifests = [
            json.loads(p.read_text())
            for p in (folder / "logs" / study / "retrain").glob("*/manifest.json")
        ]
        record = json.loads((folder / "logs" / study / "study.json").read_text())
        budget = folder / "logs" / study / "retrain" / "budget.json"
        sized = json.loads(budget.read_text()) if budget.exists() else None
    images = sum(m["train_images"] * m["epochs"] for m in manifests)
    return {
        "seed": seed,
        "minutes": round(sum(parts), 2),
        "parts": len(parts),  # more than one: interrupted and resumed
        "retrain_images_per_s": round(images / sum(m["seconds"] for m in manifests), 1),
        "date": time.strftime("%Y-%m-%d"),
        "hardware": hardware(),
        "space_sha256": space_hash(record["space_toml"]),
        # As the study recorded its space ("256", or its choices): the hash alone does not
        # show a reader that two setups differ in it.
        "batch_size": record["space"]["params"]["batch_size"],
        "schedule": record["space"]["params"]["schedule"],
        "budget": sized,  # epochs sized to the time the search left (retrain/budget.json)
        "evaluation": evaluation,
    }


def space_hash(text: str) -> str:
    """Short hash of the space a run searched, of its values (not its comments or layout):
    runs of one setup share it."""
    values = json.dumps(tomllib.loads(text), sort_keys=True)
    return hashlib.sha256(values.encode()).hexdigest()[:12]


# Published points of reference on the same test set. They chose models, epochs or
# checkpoints on the test set, which this toolkit never does: anchors, not results.
ANCHORS = [
    ("original write-up, version 1 / version 2", "99.27% / 99.48%", "-"),
    ("original write-up, final: majority vote of 3 deep CNNs, 200 epochs each", "99.73%", "-"),
    ("published 15-CNN ensemble, 30 epochs each (mean of 100 runs)", "99.745%", "99.64%"),
    ("best reported numbers", "99.84-99.91%", "-"),
]


def setup_of(result: dict) -> str:
    """How a run searched and retrained: the preset, its space and whether its members
    shared one seed (as the earliest runs' did)."""
    e = result["evaluation"]
    seeds = [m["seed"] for m in e["members"]]
    shared = ", seeds shared" if len(set(seeds)) < len(seeds) else ""
    budget = result.get("budget")
    size, epochs = e["ensemble"]["size"], e["members"][0]["epochs"]
    if budget:
        # Budgets that size each member as it starts record a size per member.
        each = " per member" if isinstance(budget["epochs"], dict) else ""
        # Where recorded: the fewest epochs a member may get before fewer members train.
        floor = f", {budget['min_epochs']} or more each" if "min_epochs" in budget else ""
        # Where recorded: the last member's plan was made again after each of its epochs
        # (a cosine schedule keeps its plan; runs that did not record theirs decayed
        # exponentially).
        replanned = "last_plans" in budget and result.get("schedule") != "cosine"
        floor += ", the last re-planned each epoch" if replanned else ""
        epochs = f"up to {budget['at_most']} (fit to time{each}{floor})"
        if each and 0 in budget["epochs"].values():  # members left out (budget.MIN_EPOCHS)
            size = f"{size} of {len(budget['epochs'])}"
    # Where recorded: the members also read the image turned each way (test-time views).
    degrees = e["ensemble"].get("tta_degrees")
    views = f", test-time turns of {degrees:g} degrees" if degrees else ""
    return (
        f"{size} x {epochs} epochs{views}, batches of {result['batch_size']}, "
        f"space {result['space_sha256'][:7]}{shared}"
    )


def epochs_here(result: dict) -> str:
    """The epochs a time-budgeted run's members got on its machine (one size, or each's, in
    the order they trained: by seed; older records list members by name)."""
    if not result.get("budget"):
        return ""
    members = sorted(result["evaluation"]["members"], key=lambda m: m["seed"])
    epochs = [m["epochs"] for m in members]
    return f" ({epochs[0] if len(set(epochs)) == 1 else ', '.join(map(str, epochs))} here)"


def best_member(result: dict) -> float:
    return max(m["test_accuracy"] for m in result["evaluation"]["members"])


def cpu(result: dict) -> str:
    return result["hardware"].split(",")[0]


def by_setup(results: list[dict]) -> dict[tuple[str, str], list[dict]]:
    """Runs grouped by setup and machine: a time budget sizes epochs to the CPU, so runs of
    one space on two CPUs are two setups, and their minutes and images/s two populations."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in results:
        groups.setdefault((setup_of(r), r["hardware"]), []).append(r)
    return groups


def spread(values: list[float], fmt: str) -> str:
    """Mean, and ± standard deviation when there is more than one value."""
    text = format(statistics.mean(values), fmt)
    return text + (f" ± {format(statistics.stdev(values), fmt)}" if len(values) > 1 else "")


def resumed(result: dict) -> str:
    parts = result.get("parts", 1)
    return f" (sum of {parts} parts: interrupted, resumed)" if parts > 1 else ""


def preset_section(preset: str, results: list[dict]) -> str:
    rows = []
    for r in results:
        e = r["evaluation"]
        speed = r.get("retrain_images_per_s")  # not kept by the first runs
        rows.append(
            f"| {r['seed']} | {setup_of(r)}{epochs_here(r)} | {r['minutes']:.1f}{resumed(r)} | "
            f"{e['ensemble']['test_accuracy']:.2%} ({e['ensemble']['test_errors']} errors) | "
            f"{best_member(r):.2%} | {f'{speed:,.0f}' if speed else '-'} | "
            f"{cpu(r)} | {r['date']} |"
        )
    machines = " and ".join(sorted({r["hardware"] for r in results}))
    means = "; ".join(
        f"{setup} on {cpu(runs[0])}: "
        f"**{spread([r['evaluation']['ensemble']['test_accuracy'] for r in runs], '.2%')}** "
        f"over {len(runs)} run(s)"
        for (setup, _), runs in by_setup(results).items()
    )
    return "\n".join(
        [
            f"## `digits run --preset {preset}`, end to end",
            "",
            f"`python benchmarks/preset.py {preset} --seeds N` (one run per seed, kept in "
            f"`benchmarks/results/preset-{preset}.json`) on {machines}. "
            "Wall time of the whole command from an "
            "empty folder (search, retrain on all 60,000 training images, ensemble, one test "
            "evaluation, export); test set: the 10,000 MNIST test images.",
            "",
            "| seed | members x retrain epochs | minutes | ensemble test accuracy | best member "
            "| retraining images/s | CPU | date |",
            "|---|---|---|---|---|---|---|---|",
            *rows,
            "",
            f"Mean ensemble test accuracy by setup: {means}.",
        ]
    )


def shipped_space(preset: str) -> str:
    """The hash of the space `digits run --preset NAME` searches as this checkout ships it."""
    return space_hash((ROOT / "spaces" / f"{preset}.toml").read_text())


def summary_rows(preset: str, runs: list[dict]) -> list[str]:
    """One row per setup and machine (`by_setup`), each run's accuracy where there are
    several."""
    rows = []
    for (setup, machine), group in by_setup(runs).items():
        speeds = [r["retrain_images_per_s"] for r in group if r.get("retrain_images_per_s")]
        accuracies = [r["evaluation"]["ensemble"]["test_accuracy"] for r in group]
        each = f": {', '.join(f'{a:.2%}' for a in accuracies)}" if len(group) > 1 else ""
        seeds = " ".join(str(r["seed"]) for r in group)
        rows.append(
            f"| `{preset}`, {setup} | {machine} | "
            f"{spread([r['minutes'] for r in group], '.1f')} min | "
            f"{spread(accuracies, '.2%')} ({len(group)} seed(s){each}) | "
            f"{max(best_member(r) for r in group):.2%} | "
            f"{spread(speeds, ',.0f') if speeds else '-'} | "
            f"`{held_command(machine)}python benchmarks/preset.py {preset} --seeds {seeds}` |"
        )
    return rows


def summary_section() -> str:
    """The presets as shipped (runs of the spaces in spaces/), then every earlier setup, then
    the anchors."""
    shipped, earlier = [], []
    for store in sorted(RESULTS.glob("preset-*.json")):
        preset = store.stem.removeprefix("preset-")
        kept = json.loads(store.read_text())
        runs = [kept[k] for k in sorted(kept, key=int)]
        ships = shipped_space(preset)
        shipped += summary_rows(preset, [r for r in runs if r["space_sha256"] == ships])
        earlier += summary_rows(preset, [r for r in runs if r["space_sha256"] != ships])
    anchors = [
        f"| anchor: {name} | - | - | {acc} | {single} | - | - |" for name, acc, single in ANCHORS
    ]
    header = [
        "| preset | hardware | wall time | ensemble test accuracy | best single member "
        "| retraining images/s | command |",
        "|---|---|---|---|---|---|---|",
    ]
    return "\n".join(
        [
            "## Summary",
            "",
            "Every row from `digits run --preset NAME` run from an empty folder; accuracy on "
            "the 10,000 MNIST test images, read once per run; wall time of the whole command. "
            "`space` is the start of a sha256 of the values of the space the run searched "
            "(its comments aside): runs of one setup share it. "
            "One row per machine: the time budgets size epochs to the CPU.",
            "",
            "**The presets as shipped** (the spaces in `spaces/`):",
            "",
            *header,
            *shipped,
            "",
            "**Earlier setups**, and published anchors (not measured here; they chose on the "
            "test set). `seeds shared`: the run's members shared random seeds (initial "
            "weights, batch order, augmentation draws).",
            "",
            *header,
            *earlier,
            *anchors,
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("preset")
    parser.add_argument(
        "--seeds",
        type=int,
        nargs="*",
        default=[0],
        help="seeds to run; none (--seeds) only redraws the table",
    )
    parser.add_argument("--workdir", type=Path, help="run here and keep the outputs")
    parser.add_argument(
        "--resume", action="store_true", help="continue an interrupted run in --workdir"
    )
    args = parser.parse_args()
    if why := stale_install():
        parser.error(why)
    if args.resume and not args.workdir:
        parser.error("--resume continues a run kept in --workdir")
    # Every run is kept in benchmarks/results/, and the table shows all of them.
    store = RESULTS / f"preset-{args.preset}.json"
    kept = json.loads(store.read_text()) if store.exists() else {}
    for seed in args.seeds:
        kept[str(seed)] = run(args.preset, seed, args.workdir, args.resume)
        write_atomic(store, json.dumps(kept, indent=1) + "\n")
    print(preset_section(args.preset, [kept[k] for k in sorted(kept, key=int)]))
    update_benchmarks("summary", summary_section())


if __name__ == "__main__":
    main()
