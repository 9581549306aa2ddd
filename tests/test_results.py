from __future__ import annotations

import csv
import json
import statistics

import pytest
from conftest import TINY, copy_of, random_smoke

from search.results import noise_line, seed_noise, trial_rows
from search.retrain import best_trials
from search.study import Study


@pytest.mark.slow
def test_results_table_csv_and_json_agree_with_the_trials(finished_study, run_cli, tmp_path):
    trials = {
        t["trial_id"]: t
        for t in (
            json.loads(p.read_text())
            for p in (finished_study / "smoke" / "tuner").glob("trial_*/trial.json")
        )
    }
    out_csv = tmp_path / "all.csv"
    code, out, _ = run_cli(
        "results", "--study", "smoke", "--logs", finished_study, "--csv", out_csv
    )
    assert code == 0 and "Study smoke: 3 trials, best first" in out
    with open(out_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["trial"] for r in rows] == sorted(trials, key=lambda t: -trials[t]["score"])
    for r in rows:
        t = trials[r["trial"]]
        assert float(r["val_accuracy"]) == t["score"]
        assert int(r["best_epoch"]) == t["best_step"] + 1
        assert int(r["epochs_run"]) >= int(r["best_epoch"])
        assert int(r["parameters"]) > 0 and float(r["images_per_s"]) > 0
        assert r["status"] in ("completed", "stopped early")
        assert float(r["learning_rate"]) == t["hyperparameters"]["values"]["learning_rate"]
        stats_file = finished_study / "smoke" / "tuner" / f"trial_{r['trial']}" / "stats.json"
        stats = json.loads(stats_file.read_text())  # each epoch timed, for benchmarks
        assert len(stats["epoch_seconds"]) == int(r["epochs_run"])
        assert 0 < sum(stats["epoch_seconds"]) <= stats["seconds"] + 0.01
    # The study keeps the same table, rewritten after every trial.
    with open(finished_study / "smoke" / "trials.csv", newline="") as f:
        assert list(csv.DictReader(f)) == rows

    code, out, _ = run_cli(
        "results", "--study", "smoke", "--logs", finished_study, "--json", "--top", "1"
    )
    best = json.loads(out)
    assert len(best) == 1 and best[0]["trial"] == rows[0]["trial"]


def test_tied_trials_rank_in_trial_order_wherever_the_pick_is_named(tmp_path):
    study = Study("tied", tmp_path)
    for trial, score in [("2", 0.986), ("10", 0.986), ("1", 0.9856), ("3", None)]:
        folder = study.tuner_dir / f"trial_{trial}"
        folder.mkdir(parents=True)
        status = "FAILED" if score is None else "COMPLETED"
        record = {"trial_id": trial, "status": status, "score": score, "best_step": 2}
        (folder / "trial.json").write_text(json.dumps(record))
    assert [r["trial"] for r in trial_rows(study)] == ["2", "10", "1", "3"]
    assert [t["trial_id"] for t in best_trials(study)] == ["2", "10", "1"]


def test_results_of_a_missing_study(tmp_path, run_cli):
    code, _, err = run_cli("results", "--study", "nope", "--logs", tmp_path)
    assert code == 2 and "no study 'nope'" in err


@pytest.fixture(scope="module")
def repeated(tmp_path_factory):
    """A 3-trial smoke search whose trials each train 3 times (--executions 3), and its
    output."""
    from search.cli import main

    logs = tmp_path_factory.mktemp("repeated") / "logs"
    code = main([*random_smoke(3), *TINY, "--executions", "3", "--logs", str(logs)])
    assert code == 0
    return logs


@pytest.mark.slow
def test_each_execution_is_kept_and_the_results_show_mean_and_spread(repeated, run_cli):
    code, out, _ = run_cli("results", "--study", "smoke", "--logs", repeated, "--json")
    rows = json.loads(out)
    trials = {
        json.loads(p.read_text())["trial_id"]: json.loads(p.read_text())
        for p in (repeated / "smoke" / "tuner").glob("trial_*/trial.json")
    }
    for r in rows:
        assert r["executions"] == 3 and len(r["val_scores"]) == 3
        # keras-tuner's score is the mean of the executions' best epochs; the spread is theirs.
        assert statistics.mean(r["val_scores"]) == pytest.approx(trials[r["trial"]]["score"])
        assert r["val_std"] == pytest.approx(statistics.stdev(r["val_scores"]))
    with open(repeated / "smoke" / "trials.csv", newline="") as f:
        stored = {r["trial"]: r for r in csv.DictReader(f)}
    for r in rows:
        assert float(stored[r["trial"]]["val_std"]) == pytest.approx(r["val_std"])
        assert [float(v) for v in stored[r["trial"]]["val_scores"].split()] == r["val_scores"]
    code, out, _ = run_cli("results", "--study", "smoke", "--logs", repeated)
    best = rows[0]
    assert code == 0 and f"{best['val_accuracy']:.4f} ± {best['val_std']:.4f}" in out
    noise = seed_noise(rows)
    assert noise_line(noise) in out.replace("\n", " ")


def row(trial: str, mean: float, std: float | None, n: int) -> dict:
    return {"trial": trial, "val_accuracy": mean, "val_std": std, "executions": n}


def test_seed_noise_pools_the_spread_and_names_the_trials_it_cannot_separate():
    rows = [row("a", 0.990, 0.001, 3), row("b", 0.989, 0.002, 3), row("c", 0.980, 0.001, 3)]
    noise = seed_noise(rows)
    # Pooled over 2 degrees of freedom each: sqrt((1 + 4 + 1) / 3) thousandths.
    assert noise["sd"] == pytest.approx(0.001 * 2**0.5)
    # a - b = 0.001 < 2 * sd * sqrt(2/3) = 0.0023; a - c = 0.010 is not.
    assert noise["within"] == ["a", "b"]
    assert "Trials a, b lie within seed noise" in noise_line(noise)
    assert noise_line(seed_noise(rows[:1] + rows[2:])).startswith("Trial a leads every other")
    alone = noise_line(seed_noise(rows[:1]))  # an A/B arm: one configuration, many seeds
    assert alone.startswith("One trial, nothing to rank") and "pooled over 1 trial)" in alone


def test_one_execution_per_trial_measures_no_noise():
    assert seed_noise([row("a", 0.99, None, 1), row("b", 0.98, None, 1)]) is None
    assert "seed noise is not measured" in noise_line(None)


@pytest.mark.slow
def test_importance_ranks_the_searched_hyperparameters(finished_study, run_cli, tmp_path):
    logs = copy_of(finished_study, tmp_path)
    code, out, _ = run_cli("results", "--study", "smoke", "--logs", logs, "--importance")
    assert code == 0
    summary = json.loads((logs / "smoke" / "importance" / "importance.json").read_text())
    # Three trials are too few to rank anything: said, not hidden.
    assert summary["note"] and f"note: {summary['note']}" in out.replace("\n", " ")
