"""Draw BENCHMARKS.md's table of `digits fidelity` results from the studies that measured it.

    python benchmarks/fidelity.py --logs DIR STUDY [STUDY ...]

Each STUDY is a finished study with a `fidelity.json` (`digits search ...`, then `digits
fidelity --study STUDY --epochs E`). One row per study: how it searched (its first command),
the rank correlations, the pick's regret, the seed spread and whether the configurations
differ beyond it; then each sampled configuration's errors. Replaces the `fidelity` section
of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import re
from datetime import date
from pathlib import Path

from throughput import hardware, update_benchmarks

from search.results import format_p, read_fidelity
from search.study import Study


def corr(value: float | None, interval: list[float] | None) -> str:
    if value is None:
        return "-"
    return f"{value:+.2f}" + (f" [{interval[0]:+.2f}, {interval[1]:+.2f}]" if interval else "")


def as_in_repo(command: str) -> str:
    """`command` with a space file given by its path in a copy of this repository (long
    runs go from a copy, so edits to the checkout cannot change them) named as in the
    repository; the study records the file's text and sha256 either way."""
    return re.sub(r"\S*/(benchmarks/spaces/\S+)", r"\1", command)


def rows(study: Study) -> tuple[str, list[str]]:
    """The study's summary row, and one row per sampled configuration."""
    record, result = study.read(), read_fidelity(study)
    if result is None:
        raise SystemExit(f"{study.dir}: no fidelity.json; run `digits fidelity` first")
    command = as_in_repo(record["commands"][0])
    summary = (
        f"| `{command}` | {len(result['configurations'])} x {result['seeds']} seeds, "
        f"{result['epochs']} epochs | {corr(result['spearman'], result['spearman_95'])} "
        f"| {result['spearman_chance']:.0%} | {corr(result['kendall'], result['kendall_95'])} "
        f"| {result['regret_errors']:.1f} | {result['seed_spread_errors']:.1f} "
        f"| {format_p(result['differ_p'])} |"
    )
    trials = [json.loads(p.read_text()) for p in study.tuner_dir.glob("trial_*/trial.json")]
    values = {t["trial_id"]: t["hyperparameters"]["values"] for t in trials}
    tunable = [k for k, v in record["space"]["params"].items() if v.startswith(("{", "["))]
    detail = [
        f"| {study.name} | {c['rank'] + 1} | {c['trial']} | {c['search_score']:.4f} | "
        f"{', '.join(map(str, c['val_errors']))} | "
        + ", ".join(f"{k} {values[c['trial']].get(k)}" for k in tunable)
        + " |"
        for c in result["configurations"]
    ]
    return summary, detail


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("studies", nargs="+")
    parser.add_argument("--logs", type=Path, default=Path("logs"))
    args = parser.parse_args()
    summaries, details = [], []
    for name in args.studies:
        summary, detail = rows(Study(name, args.logs))
        summaries.append(summary)
        details += detail
    text = "\n".join(
        [
            f"`python benchmarks/fidelity.py --logs DIR {' '.join(args.studies)}` on "
            f"{hardware()}, {date.today()}. Full fidelity: every training image outside the "
            "study's validation split; errors on that split (5,000 images; the test set is not "
            "read). ANOVA p: the chance that seed noise alone puts the configurations' errors as "
            "far apart; at 0.05 or more they do not differ beyond it.",
            "",
            "| search (its command) | sampled at full fidelity | Spearman [95%] | random "
            "ranking as good | Kendall [95%] | the pick's regret, errors | seed spread, errors "
            "| configurations differ (ANOVA) |",
            "|---|---|---|---|---|---|---|---|",
            *summaries,
            "",
            "| study | search rank | trial | search score | validation errors by seed | "
            "hyperparameters searched |",
            "|---|---|---|---|---|---|",
            *details,
        ]
    )
    print(text)
    update_benchmarks("fidelity", text)


if __name__ == "__main__":
    main()
