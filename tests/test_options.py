"""search.options: one check of each search option, for the command line and the Python API."""

from __future__ import annotations

import numpy as np
import pytest

from search import api
from search.options import AT_LEAST, SearchOptions


@pytest.mark.parametrize(
    "given, message",
    [
        ({"max_trials": -1}, "max_trials: must be a whole number of at least 1, got -1"),
        ({"patience": 0}, "patience: must be a whole number of at least 1, got 0"),
        ({"executions": 2.5}, "executions: must be a whole number of at least 1, got 2.5"),
        ({"val_size": True}, "val_size: must be a whole number of at least 1, got True"),
        ({"tuner": "annealing"}, "tuner: 'annealing' is none of hyperband, random, bayesian"),
        ({"time_budget": 0}, "time_budget: must be a positive number of seconds, got 0"),
        ({"time_budget": "15m"}, "time_budget: must be a positive number of seconds, got '15m'"),
        ({"time_budget": float("inf")}, "time_budget: must be a positive .* got inf"),
    ],
)
def test_the_api_gets_the_checks_the_command_line_makes(tmp_path, given, message):
    # Unchecked, keras-tuner would run something else (max_trials=-1 runs one trial).
    with pytest.raises(ValueError, match=message):
        api.search("smoke", study="s", root=tmp_path, **given)
    assert not (tmp_path / "s").exists()  # refused before a study is written


@pytest.mark.parametrize(
    "given, message",
    [
        ({"top": 0}, "top: must be a whole number of at least 1, got 0"),
        ({"seeds": -1}, "seeds: must be a whole number of at least 1, got -1"),
        ({"epochs": 0}, "epochs: must be a whole number of at least 1, got 0"),
        ({"time_budget": -5}, "time_budget: must be a positive number of seconds, got -5"),
    ],
)
def test_a_retraining_through_the_api_is_checked_before_the_study_is_read(given, message):
    # (No study "nowhere" exists: the values are refused first, as the command line's are.)
    with pytest.raises(ValueError, match=message):
        api.retrain("nowhere", **given)


def test_whole_numbers_of_any_integer_type_pass():
    assert SearchOptions("s", max_trials=np.int64(3), max_epochs=None).max_trials == 3


def test_the_command_line_checks_each_count_against_the_same_least_value(run_cli, capfd):
    for name, low in AT_LEAST.items():
        retraining = name in ("top", "seeds", "epochs")
        command = ("retrain", "--study") if retraining else ("search", "--space")
        flag = "--" + name.replace("_", "-")
        with pytest.raises(SystemExit) as stopped:
            run_cli(*command, "smoke", flag, str(low - 1))
        assert stopped.value.code == 2
        assert f"argument {flag}: must be at least {low}, got {low - 1}" in capfd.readouterr().err
