from __future__ import annotations

import csv
import json


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


def test_results_of_a_missing_study(tmp_path, run_cli):
    code, _, err = run_cli("results", "--study", "nope", "--logs", tmp_path)
    assert code == 2 and "no study 'nope'" in err
