"""The tables the `digits` commands print (rich), from the records the modules return.

Nothing here computes a result: it lays out what `results`, `ensemble`, `fidelity` and
`importance` produced, so the command line stays a thin layer and the layouts sit together.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from search.results import FIELDS, columns, fidelity_line, format_score, noise_line, seed_noise
from search.space import Space

HEADERS = {
    "val_accuracy": "val acc",
    "executions": "runs",
    "full_val_accuracy": "full val acc",
    "best_epoch": "best ep",
    "epochs_run": "epochs",
    "seconds": "sec",
    "parameters": "params",
    "images_per_s": "img/s",
}


def table(title: str, headers: list[str], rows: list[list[str]], left: int = 1) -> Table:
    """A table whose first `left` columns align left and the rest, numbers, right."""
    out = Table(title=title, title_justify="left")
    for i, header in enumerate(headers):
        out.add_column(header, justify="left" if i < left else "right")
    for row in rows:
        out.add_row(*row)
    return out


def cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}" if value < 1 else f"{value:,.0f}"
    return str(value)


def trials_table(study: str, rows: list[dict[str, Any]]) -> Table:
    """The trials of a study: the fixed columns that say something here, and the
    hyperparameters that differ between trials. The seed spread goes with the score."""
    hidden = {"reason", "val_std", "val_scores"}
    if not any((r["executions"] or 0) > 1 for r in rows):
        hidden.add("executions")
    if all(r["full_val_accuracy"] is None for r in rows):
        hidden.add("full_val_accuracy")
    varying = [c for c in columns(rows)[len(FIELDS) :] if len({str(r.get(c)) for r in rows}) > 1]
    shown = [c for c in FIELDS if c not in hidden] + varying

    def value(r: dict[str, Any], c: str) -> str:
        if c == "val_accuracy" and r[c] is not None:
            return format_score(r[c], r["val_std"])
        return cell(r.get(c))

    return table(
        f"Study {study}: {len(rows)} trials, best first",
        [HEADERS.get(c, c) for c in shown],
        [[value(r, c) for c in shown] for r in rows],
        left=0,
    )


def fidelity_table(result: dict[str, Any]) -> Table:
    """Each sampled configuration: its search rank and score, its full-fidelity errors."""
    return table(
        f"Search score against full fidelity ({result['val_images']:,} validation images)",
        ["search rank", "trial", "search score", "val errors by seed", "mean", "acc"],
        [
            [
                str(c["rank"] + 1),
                c["trial"],
                f"{c['search_score']:.4f}",
                ", ".join(map(str, c["val_errors"])),
                f"{c['mean_val_errors']:.1f}",
                f"{c['full_val_accuracy']:.4%}",
            ]
            for c in result["configurations"]
        ],
        left=0,
    )


def print_evaluated(
    console: Console, evaluation: dict[str, Any], report: dict[str, Any], folder: Path
) -> None:
    """The validation split (members trained without it), then the one test evaluation."""
    validation = evaluation.get("validation")
    if validation:
        console.print(
            table(
                f"Validation split ({validation['images']:,} images, held out of retraining)",
                ["best k members (search order)", "accuracy", "with TTA"],
                [
                    [
                        f"{len(r['members'])}: {', '.join(r['members'])}",
                        f"{r['accuracy']:.2%}",
                        f"{r['tta_accuracy']:.2%}",
                    ]
                    for r in validation["by_size"]
                ],
            )
        )
    ens = evaluation["ensemble"]
    members = [
        [
            m["member"],
            f"{m['val_accuracy_in_search']:.4f}",
            f"{m['test_accuracy']:.4%}",
            str(m["test_errors"]),
        ]
        for m in evaluation["members"]
    ]
    name = f"ensemble of {ens['size']}{' with TTA' if ens.get('tta') else ''}"
    total = [
        f"[bold]{name}[/]",
        "",
        f"[bold]{ens['test_accuracy']:.4%}[/]",
        str(ens["test_errors"]),
    ]
    console.print(
        table(
            "Test set (read once, after every choice)",
            ["model", "val acc (search)", "test acc", "errors"],
            [*members, total],
        )
    )
    console.print(
        f"Ensemble gain: {evaluation['gain_over_best_member']:+.2%} over the best member, "
        f"{evaluation['gain_over_mean_member']:+.2%} over the mean member."
    )
    pairs = ", ".join(f"{p['pair']} ({p['errors']})" for p in report["most_confused_pairs"][:5])
    console.print(f"Most confused pairs: {pairs or 'none'}")
    console.print(f"Ensemble: {folder}/ensemble.keras · report: {folder}/report/")


def spaces_table(spaces: dict[str, Space]) -> Table:
    rows = []
    for name, s in spaces.items():
        size = s.size()
        rows.append([name, f"{size:,}" if size is not None else "continuous", s.description])
    title = "Built-in search spaces (spaces/*.toml)"
    return table(title, ["name", "configurations", "description"], rows, left=3)


def print_results(
    console: Console,
    study: str,
    rows: list[dict[str, Any]],
    every: list[dict[str, Any]],
    fidelity: dict[str, Any] | None,
) -> None:
    """`rows` (the trials asked for) as a table, their failures, then what `every` trial of
    the study says of seed noise, and the fidelity measured, if it was."""
    console.print(trials_table(study, rows))
    for r in rows:
        if r["reason"]:
            console.print(f"trial {r['trial']} failed: {escape(r['reason'])}")
    if any(r["val_accuracy"] is not None for r in every):
        console.print(noise_line(seed_noise(every)))
    if fidelity:
        console.print(fidelity_line(fidelity))


def print_importance(console: Console, summary: dict[str, Any], folder: Path) -> None:
    """`importance.analyse`'s ranking, where its plots are, and its note."""
    if summary["ranking"]:
        ranking = [[name, f"{share:.0%}"] for name, share in summary["ranking"]]
        title = "Hyperparameter importance (random forest, permutation)"
        console.print(table(title, ["hyperparameter", "share"], ranking))
        console.print(f"Score-vs-value plots: {folder}/ (also in TensorBoard's image tab)")
    if summary["note"]:
        console.print(f"[yellow]note:[/] {summary['note']}")


def print_run(
    console: Console, ensemble: dict[str, Any], export_dir: Path, parts: list[float]
) -> None:
    """The last line of `digits run`: the test accuracy, where the model is, the time taken."""
    took = f"{sum(parts) / 60:.1f} min" + (f" in {len(parts)} parts" if len(parts) > 1 else "")
    console.print(
        f"[bold]Test accuracy {ensemble['test_accuracy']:.2%}[/] ({ensemble['test_errors']} "
        f"errors) · model in {export_dir}/ · this run took {took}"
    )


def print_fidelity(console: Console, result: dict[str, Any], saved: Path) -> None:
    """`digits fidelity`'s table, its one-sentence summary, and where it is kept."""
    console.print(fidelity_table(result))
    console.print(fidelity_line(result))
    console.print(f"Saved in {saved}; `digits results` shows it too.")


def print_compare(console: Console, result: dict[str, Any]) -> None:
    """`digits compare`: each configuration's seeds, the top k averaged, the studies'
    ensembles, the selection."""
    images = f"{result['val_images']:,} validation images"
    console.print(
        table(
            f"Held-out members on the validation split ({images}), fewest errors first",
            ["study", "trial", "epochs", "errors by seed", "mean ± sd", "minutes each"],
            [
                [
                    c["study"],
                    c["trial"],
                    "/".join(map(str, c["epochs"])),
                    ", ".join(map(str, c["val_errors"])),
                    _mean_sd(c),
                    f"{c['minutes_each']:.1f}",
                ]
                for c in result["configurations"]
            ],
            left=3,
        )
    )
    _print_top(console, result["top"])
    if len(result["studies"]) > 1:
        _print_pooled(console, result)
    steps = result["selection"]
    console.print(
        table(
            "Forward selection: each step adds the member that lowers the errors most",
            ["size", "added", "errors", "minutes"],
            [
                [str(k), s["members"][-1], str(s["val_errors"]), f"{s['minutes']:.0f}"]
                for k, s in enumerate(steps, 1)
            ],
            left=2,
        )
    )
    fewest = min(steps, key=lambda s: s["val_errors"])
    size = len(fewest["members"])
    console.print(
        f"Fewest errors: {fewest['val_errors']} with {size} member{'s' * (size > 1)}. The "
        "selection is chosen on the split it is scored on, so its figures flatter it; the "
        "studies' and the pooled ensembles choose nothing. Minutes as each member trained, "
        "other work beside it included."
    )


def _mean_sd(row: dict[str, Any]) -> str:
    """`compare`'s errors of seeds or ensembles: mean, and spread where there is one."""
    return f"{row['mean']:.1f}" + (f" ± {row['sd']:.1f}" if row["sd"] is not None else "")


def _print_top(console: Console, rows: list[dict[str, Any]]) -> None:
    """What `digits retrain --top k` averages, by epochs: more members against longer ones."""
    console.print(
        table(
            "The search's top k trials, one seed each, averaged (every seed combination)",
            ["study", "epochs", "top k", "ensembles", "errors mean ± sd", "minutes"],
            [
                [
                    r["study"],
                    str(r["epochs"]),
                    str(r["top"]),
                    str(r["ensembles"]),
                    _mean_sd(r),
                    f"{r['minutes']:.1f}",
                ]
                for r in rows
            ],
            left=1,
        )
    )


def _print_pooled(console: Console, result: dict[str, Any]) -> None:
    """Each study's members averaged, all of them averaged, and what pooling changes."""
    pooled = result["pooled"]
    rows = [
        [f"{name}'s {len(e['members'])}", str(e["val_errors"]), f"{e['minutes']:.0f}"]
        for name, e in result["studies"].items()
    ]
    rows.append(
        [f"all {len(pooled['members'])}", str(pooled["val_errors"]), f"{pooled['minutes']:.0f}"]
    )
    columns = ["members", "errors", "minutes"]
    console.print(table("Ensembles (probabilities averaged)", columns, rows))
    for name, e in result["studies"].items():
        console.print(
            f"All members against {name}'s alone: {e['pooled_fixes']} images fixed, "
            f"{e['pooled_breaks']} broken."
        )
