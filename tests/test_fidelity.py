"""`digits fidelity`: a study's trials retrained at full fidelity, against the search's ranking."""

from __future__ import annotations

import json
import statistics

import keras
import pytest
from conftest import random_smoke

from search import data
from search.fidelity import sample_ranks, summarize
from search.results import fidelity_line


def planted(errors: list[tuple[int, int]]) -> list[dict]:
    """Members of configurations ranked by the search in the given order, with these
    validation errors for their two seeds."""
    return [
        {
            "trial": str(rank),
            "rank": rank,
            "seed": seed,
            "search_score": 0.9 - rank / 100,
            "val_errors": e,
        }
        for rank, pair in enumerate(errors)
        for seed, e in enumerate(pair)
    ]


def test_a_search_that_ranks_as_full_training_does():
    result = summarize(planted([(20, 22), (25, 24), (30, 31), (40, 38)]), 5000)
    assert result["spearman"] == pytest.approx(1) and result["kendall"] == pytest.approx(1)
    assert result["spearman_chance"] == pytest.approx(1 / 24)  # one ordering of 4 in 24
    assert result["regret_errors"] == 0 and result["pick"] == result["best_at_full_fidelity"]
    # Pooled over the four configurations: variances 2, 0.5, 0.5, 2 (two seeds each).
    assert result["seed_spread_errors"] == pytest.approx(statistics.mean([2, 0.5, 0.5, 2]) ** 0.5)
    low, high = result["spearman_95"]
    assert -1 <= low <= 1 and high == pytest.approx(1)


def test_a_search_that_ranks_backwards_has_regret_beyond_the_seed_spread():
    result = summarize(planted([(40, 38), (30, 31), (25, 24), (20, 22)]), 5000)
    assert result["spearman"] == pytest.approx(-1)
    assert result["spearman_chance"] == pytest.approx(1.0)  # every ordering does as well
    assert result["regret_errors"] == pytest.approx(39 - 21)
    assert result["best_at_full_fidelity"] == "3" and not result["regret_within_seed_spread"]
    accuracies = [c["full_val_accuracy"] for c in result["configurations"]]
    assert accuracies == pytest.approx(
        [1 - 39 / 5000, 1 - 30.5 / 5000, 1 - 24.5 / 5000, 1 - 21 / 5000]
    )


def test_a_regret_inside_the_seed_spread_is_called_noise():
    result = summarize(planted([(24, 30), (22, 26), (35, 37)]), 5000)
    assert result["regret_errors"] == pytest.approx(3)
    assert result["seed_spread_errors"] > 3 and result["regret_within_seed_spread"]


def test_configurations_that_differ_by_no_more_than_seed_noise_are_called_so():
    apart = summarize(planted([(20, 22), (25, 24), (30, 31), (40, 38)]), 5000)
    alike = summarize(planted([(24, 23), (25, 21), (25, 25)]), 5000)
    assert apart["differ_p"] < 0.001 and alike["differ_p"] > 0.3
    run = {"seeds": 2, "epochs": "40", "train_images": 55_000}
    assert "The configurations differ beyond seed noise" in fidelity_line(apart | run)
    assert "do not differ beyond seed noise (ANOVA p 0.54)" in fidelity_line(alike | run)
    # Seeds that agree exactly: the configurations differ exactly when their means do.
    assert summarize(planted([(20, 20), (25, 25), (30, 30)]), 5000)["differ_p"] == 0
    assert summarize(planted([(20, 20), (20, 20), (20, 20)]), 5000)["differ_p"] == 1


def test_the_sample_spans_the_ranking_and_keeps_the_pick():
    assert sample_ranks(5, 8) == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="needs 2 configurations or more, got 1"):
        sample_ranks(5, 1)
    ranks = sample_ranks(20, 8)
    assert len(ranks) == 8 and ranks[0] == 0 and ranks[-1] == 19


@pytest.fixture(scope="module")
def measured(tmp_path_factory, mnist_subset):
    """A 3-trial smoke search on 3,000 MNIST images, then `digits fidelity` at 2 epochs,
    started over a member an earlier run left unfinished."""
    from search.cli import main

    logs = tmp_path_factory.mktemp("fidelity") / "logs"
    common = ["--logs", str(logs)]
    search = [*random_smoke(3), "--data", str(mnist_subset), "--val-size", "500", *common]
    assert main(search) == 0
    # As a run killed in its first member leaves it: a member folder without a manifest.
    (logs / "smoke" / "fidelity" / "t0_s0_ho" / "backup").mkdir(parents=True)
    assert main(["fidelity", "--study", "smoke", "--epochs", "2", *common]) == 0
    return logs / "smoke"


@pytest.mark.slow
def test_fidelity_retrains_every_trial_with_two_seeds_and_counts_real_errors(
    measured, mnist_subset
):
    result = json.loads((measured / "fidelity.json").read_text())
    assert result["train_images"] == 2500 and result["val_images"] == 500
    assert result["epochs"] == "2" and len(result["members"]) == 6
    trials = {
        json.loads(p.read_text())["trial_id"]: json.loads(p.read_text())
        for p in (measured / "tuner").glob("trial_*/trial.json")
    }
    assert {c["trial"] for c in result["configurations"]} == set(trials)
    ranked = sorted(trials, key=lambda t: -trials[t]["score"])
    assert [c["trial"] for c in result["configurations"]] == ranked
    # Each count is the member's real errors on the study's validation split.
    split = data.split(data.load(mnist_subset), 500, seed=0)
    member = result["members"][0]
    folder = measured / "fidelity" / f"t{member['trial']}_s{member['seed']}_ho"
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["epochs"] == 2 and manifest["train_images"] == 2500
    probs = keras.saving.load_model(folder / "member.keras").predict(split.x_val, verbose=0)
    assert member["val_errors"] == int((probs.argmax(1) != split.y_val).sum())
    means = [statistics.mean(c["val_errors"]) for c in result["configurations"]]
    assert result["regret_errors"] == pytest.approx(means[0] - min(means))
    assert -1 <= result["spearman"] <= 1


@pytest.mark.slow
def test_results_show_fidelity_and_a_rerun_trains_nothing(measured, run_cli):
    logs = measured.parent
    code, out, _ = run_cli("results", "--study", "smoke", "--logs", logs)
    assert code == 0 and "full val acc" in out and "Fidelity (3 configurations x 2 seeds" in out
    code, out, _ = run_cli("results", "--study", "smoke", "--logs", logs, "--json")
    rows = json.loads(out)
    fidelity = json.loads((measured / "fidelity.json").read_text())
    full = {c["trial"]: c["full_val_accuracy"] for c in fidelity["configurations"]}
    assert {r["trial"]: r["full_val_accuracy"] for r in rows} == full
    before = {p: p.stat().st_mtime for p in measured.glob("fidelity/*/member.keras")}
    code, out, _ = run_cli("fidelity", "--study", "smoke", "--epochs", "2", "--logs", logs)
    assert code == 0 and "(6 already done)" in out
    assert {p: p.stat().st_mtime for p in measured.glob("fidelity/*/member.keras")} == before
    code, _, err = run_cli("fidelity", "--study", "smoke", "--epochs", "3", "--logs", logs)
    assert code == 2 and "trained for other epochs" in err and "--epochs" in err


def test_fidelity_needs_two_seeds(run_cli, capfd):
    with pytest.raises(SystemExit) as exit:
        run_cli("fidelity", "--study", "smoke", "--seeds", "1")
    assert exit.value.code == 2 and "--seeds: must be at least 2" in capfd.readouterr().err
