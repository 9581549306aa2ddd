"""Time `digits run --preset NAME` end to end, from an empty folder, and record the result.

    python benchmarks/preset.py quick [--seeds 0 1 2]

Each seed is a fresh run (search, retrain, ensemble, one test evaluation, export) in its own
temporary folder, timed by the wall clock. Prints a Markdown table and replaces the
`preset-NAME` section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from throughput import hardware, update_benchmarks

RESULTS = Path(__file__).resolve().parent / "results"


def run(preset: str, seed: int, workdir: Path | None) -> dict:
    """One fresh run; in `workdir` (kept, e.g. for its report pictures) or a temporary one."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = workdir or Path(tmp)
        study = f"{preset}-seed{seed}"
        if (folder / "logs" / study).exists():
            raise SystemExit(f"{folder / 'logs' / study} exists: a timed run starts from nothing")
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
        start = time.perf_counter()
        subprocess.run(cmd, cwd=folder, check=True)
        minutes = (time.perf_counter() - start) / 60
        evaluation = json.loads(
            (folder / "logs" / study / "ensemble" / "evaluation.json").read_text()
        )
        manifests = [
            json.loads(p.read_text())
            for p in (folder / "logs" / study / "retrain").glob("*/manifest.json")
        ]
    images = sum(m["train_images"] * m["epochs"] for m in manifests)
    return {
        "seed": seed,
        "minutes": round(minutes, 2),
        "retrain_images_per_s": round(images / sum(m["seconds"] for m in manifests), 1),
        "date": time.strftime("%Y-%m-%d"),
        "hardware": hardware(),
        "evaluation": evaluation,
    }


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
    args = parser.parse_args()
    # Every run is kept in benchmarks/results/, and the table shows all of them.
    store = RESULTS / f"preset-{args.preset}.json"
    kept = json.loads(store.read_text()) if store.exists() else {}
    for seed in args.seeds:
        kept[str(seed)] = run(args.preset, seed, args.workdir)
        RESULTS.mkdir(exist_ok=True)
        store.write_text(json.dumps(kept, indent=1) + "\n")
    results = [kept[k] for k in sorted(kept, key=int)]
    # The preset may change between runs: the table says how each run retrained.
    rows, by_setup = [], {}
    for r in results:
        e = r["evaluation"]
        best = max(m["test_accuracy"] for m in e["members"])
        setup = f"{e['ensemble']['size']} x {e['members'][0]['epochs']} epochs"
        by_setup.setdefault(setup, []).append(e["ensemble"]["test_accuracy"])
        speed = r.get("retrain_images_per_s")  # not kept by the first runs
        rows.append(
            f"| {r['seed']} | {setup} | {r['minutes']:.1f} | "
            f"{e['ensemble']['test_accuracy']:.2%} ({e['ensemble']['test_errors']} errors) | "
            f"{best:.2%} | {f'{speed:,.0f}' if speed else '-'} | {r['date']} |"
        )
    means = "; ".join(
        f"{setup}: **{statistics.mean(a):.2%}**"
        + (f" ± {statistics.stdev(a):.2%}" if len(a) > 1 else "")
        + f" over {len(a)} run(s)"
        for setup, a in by_setup.items()
    )
    text = "\n".join(
        [
            f"## `digits run --preset {args.preset}`, end to end",
            "",
            f"`python benchmarks/preset.py {args.preset} --seeds N` (one run per seed, kept in "
            f"`benchmarks/results/preset-{args.preset}.json`) on {results[0]['hardware']}. "
            "Wall time of the whole command from an "
            "empty folder (search, retrain on all 60,000 training images, ensemble, one test "
            "evaluation, export); test set: the 10,000 MNIST test images.",
            "",
            "| seed | members x retrain epochs | minutes | ensemble test accuracy | best member "
            "| retraining images/s | date |",
            "|---|---|---|---|---|---|---|",
            *rows,
            "",
            f"Mean ensemble test accuracy by setup: {means}.",
        ]
    )
    print(text)
    update_benchmarks(f"preset-{args.preset}", text)


if __name__ == "__main__":
    main()
