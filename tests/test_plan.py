"""What a search will run: its plan (Hyperband's brackets, budgets, executions) and `--plan`."""

from __future__ import annotations

import keras_tuner as kt

from search import space
from search.options import SearchOptions
from search.plan import hyperband_epochs, make_plan


def test_grid_needs_a_finite_space(tmp_path, run_cli):
    code, _, err = run_cli("search", "--space", "seed_v1", "--tuner", "grid", "--logs", tmp_path)
    assert code == 2 and "learning_rate is a continuous range" in err
    assert not (tmp_path / "seed_v1").exists()


def test_hyperband_plan_matches_keras_tuner():
    for max_epochs in (2, 3, 6, 10, 27):
        oracle = kt.oracles.HyperbandOracle(
            kt.Objective("val_accuracy", "max"), max_epochs=max_epochs, factor=3
        )
        plan = hyperband_epochs(max_epochs)
        # Bracket by bracket, round by round, as keras-tuner sizes them: every trial of a
        # round trains the same epochs on from the round before, and the survivors of a
        # bracket's last round have trained max_epochs in all.
        done = 0
        for bracket in reversed(range(oracle._get_num_brackets())):
            trained = 0
            for rnd in range(bracket + 1):
                size = oracle._get_size(bracket, rnd)
                (epochs,) = set(plan[done : done + size])
                trained, done = trained + epochs, done + size
            assert trained == max_epochs
        assert done == len(plan)


def test_plan_honours_budgets():
    smoke = space.load("smoke")
    assert make_plan(smoke, SearchOptions("s", tuner="grid")).trials == 4
    assert make_plan(smoke, SearchOptions("s", tuner="random", max_trials=50)).trials == 4
    v2 = space.load("seed_v2")
    assert make_plan(v2, SearchOptions("s", tuner="random")).trials == 10
    hb = make_plan(v2, SearchOptions("s", tuner="hyperband", max_trials=3))
    assert hb.trial_epochs == [2, 2, 2]


def test_plan_prints_trials_and_an_estimate_without_training(tmp_path, run_cli, tiny):
    code, out, _ = run_cli(
        "search", "--space", "seed_v2", "--plan", "--max-epochs", "3", *tiny, "--logs", tmp_path
    )
    assert code == 0
    assert "Space seed_v2: continuous" in out
    assert "Hyperband (factor 3, max 3 epochs)" in out and "training images/s" in out
    n = len(hyperband_epochs(3))
    assert f"{n} trials, {sum(hyperband_epochs(3))} epochs in all" in out
    assert not (tmp_path / "seed_v2").exists()


def test_a_plan_counts_every_execution():
    smoke = space.load("smoke")
    once = make_plan(smoke, SearchOptions(study="s", tuner="random", max_trials=3))
    thrice = make_plan(smoke, SearchOptions(study="s", tuner="random", max_trials=3, executions=3))
    assert thrice.trials == once.trials == 3
    assert thrice.epochs == 3 * once.epochs == 3 * 3 * 2  # the space's 2 epochs per trial
    assert thrice.epochs_from(1) == 2 * 3 * 2


def test_a_space_with_nothing_to_search_is_said_to_be_so_before_training(tmp_path, run_cli):
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    code, out, _ = run_cli("search", "--space", empty, "--plan", "--logs", tmp_path)
    assert code == 0 and f"{empty}: nothing to search, every key is fixed" in out
    code, out, _ = run_cli("search", "--space", "smoke", "--plan", "--logs", tmp_path)
    assert code == 0 and "nothing to search" not in out


def test_a_plan_calibrates_on_a_shape_that_builds(tmp_path, run_cli, tiny):
    # The default configuration takes each choice's first value: here a kernel too large.
    partial = tmp_path / "partial.toml"
    partial.write_text(
        '[model]\nblocks = 3\nfilters_1 = 4\nkernel_size = {choice = [9, 3]}\npadding = "valid"\n'
    )
    code, out, _ = run_cli("search", "--space", partial, "--plan", *tiny, "--logs", tmp_path)
    assert code == 0 and "training images/s" in out
    assert "1 of 2 combinations of kernel_size cannot build" in out
