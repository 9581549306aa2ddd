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
    ],
)
def test_the_api_gets_the_checks_the_command_line_makes(tmp_path, given, message):
    # Unchecked, keras-tuner would run something else (max_trials=-1 runs one trial).
    with pytest.raises(ValueError, match=message):
        api.search("smoke", study="s", root=tmp_path, **given)
    assert not (tmp_path / "s").exists()  # refused before a study is written


def test_whole_numbers_of_any_integer_type_pass():
    assert SearchOptions("s", max_trials=np.int64(3), max_epochs=None).max_trials == 3


def test_the_command_line_checks_each_count_against_the_same_least_value(run_cli, capfd):
    for name, low in AT_LEAST.items():
        if name == "top":  # not a flag of `digits search`
            continue
        flag = "--" + name.replace("_", "-")
        with pytest.raises(SystemExit) as stopped:
            run_cli("search", "--space", "smoke", flag, str(low - 1), "--plan")
        assert stopped.value.code == 2
        assert f"argument {flag}: must be at least {low}, got {low - 1}" in capfd.readouterr().err
