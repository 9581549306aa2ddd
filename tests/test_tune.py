from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import copy_of

from search.study import Study


def trials_of(logs: Path, study: str) -> dict[str, dict]:
    folder = logs / study / "tuner"
    return {
        p.parent.name: json.loads(p.read_text()) for p in sorted(folder.glob("trial_*/trial.json"))
    }


@pytest.mark.slow
def test_search_records_study_trials_and_tensorboard(finished_study):
    record = json.loads((finished_study / "smoke" / "study.json").read_text())
    assert record["tuner"] == "random" and record["space"]["name"] == "smoke"
    assert record["data"]["sha256"].startswith("06af5dfe")
    assert record["data"]["train"] == 600 and record["data"]["val"] == 200
    assert {"tensorflow", "keras", "keras-tuner", "tensorboard"} <= set(record["versions"])
    assert record["commands"][0].startswith("digits search --space smoke")
    trials = trials_of(finished_study, "smoke")
    assert len(trials) == 3 and all(t["status"] == "COMPLETED" for t in trials.values())
    for t in trials.values():
        assert 0 < t["score"] <= 1
        assert (finished_study / "smoke" / "tensorboard" / t["trial_id"] / "execution0").is_dir()


@pytest.mark.slow
def test_rerunning_a_finished_study_adds_nothing(finished_study, run_cli, tiny, tmp_path):
    logs = copy_of(finished_study, tmp_path)
    before = trials_of(logs, "smoke")
    argv = ["search", "--space", "smoke", "--tuner", "random", "--max-trials", "3", *tiny]
    code, out, _ = run_cli(*argv, "--logs", logs)
    assert code == 0 and "Resuming study smoke" in out and "3 trials completed" in out
    assert trials_of(logs, "smoke") == before


@pytest.mark.slow
def test_a_study_made_differently_is_refused(finished_study, run_cli, tiny):
    code, _, err = run_cli(
        "search", "--space", "smoke", "--tuner", "grid", *tiny, "--logs", finished_study
    )
    assert code == 2 and "was made with a different tuner" in err and "--overwrite" in err


@pytest.mark.slow
def test_search_output_shows_progress_and_best_table(tmp_path, run_cli, tiny):
    code, out, _ = run_cli(
        "search", "--space", "smoke", "--tuner", "grid", *tiny, "--logs", tmp_path
    )
    assert code == 0
    assert "space smoke (4 configurations)" in out
    for i in range(1, 5):
        assert f"Trial {i}/4" in out
    assert "ETA" in out and "val_accuracy 0." in out
    assert "Best 4 trials by val_accuracy" in out and "learning_rate" in out
    assert "\x1b[" not in out  # no control codes when the output is not a terminal


@pytest.mark.slow
def test_failed_trial_is_recorded_and_the_search_goes_on(tmp_path, run_cli, tiny):
    path = tmp_path / "unbuildable.toml"
    path.write_text(
        "[model]\nblocks = 3\nfilters_1 = 4\nfilters_2 = 4\nfilters_3 = 4\n"
        'kernel_size = {choice = [3, 9]}\npadding = "valid"\ndense_layers = 0\n'
        "[train]\nepochs = 1\n"
    )
    code, out, _ = run_cli(
        "search", "--space", path, "--tuner", "grid", *tiny, "--logs", tmp_path / "logs"
    )
    assert code == 0 and "1 trials completed, 1 failed" in out
    assert "a 9x9 window does not fit the 1x1 map" in out
    statuses = sorted(t["status"] for t in trials_of(tmp_path / "logs", "unbuildable").values())
    assert statuses == ["COMPLETED", "FAILED"]


@pytest.mark.slow
def test_consecutive_failures_stop_the_search_with_their_causes(tmp_path, run_cli, tiny):
    path = tmp_path / "broken.toml"
    path.write_text(
        # Built only with 2 blocks, which the grid reaches after every rate of 4 blocks.
        "[model]\nblocks = {choice = [4, 2]}\nfilters_1 = 2\nfilters_2 = 2\nfilters_3 = 2\n"
        'filters_4 = 2\npadding = "valid"\n'
        "[train]\nlearning_rate = {choice = [1e-3, 2e-3, 3e-3, 4e-3]}\n"
    )
    code, out, err = run_cli(
        "search", "--space", path, "--tuner", "grid", *tiny, "--logs", tmp_path / "logs"
    )
    assert code == 2 and "4 combinations" not in err
    assert "cannot build, e.g." in out  # warned up front
    assert "search stopped after 3 consecutive failed trials (3 failed in all): 3 x " in err
    assert "block 4 conv 1: a 3x3 window does not fit the 1x1 map" in err


@pytest.mark.slow
def test_killed_search_resumes_without_losing_or_repeating_trials(tmp_path, smoke_search):
    logs = tmp_path / "logs"
    argv = [sys.executable, "-m", "search", *smoke_search(4, "--logs", logs)]
    proc = subprocess.Popen(
        argv,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: the command and its child
    )
    oracle = logs / "smoke" / "tuner" / "oracle.json"
    deadline = time.monotonic() + 120
    try:
        # Kill it in the middle of its second trial: one trial done, one running.
        while time.monotonic() < deadline:
            try:
                state = json.loads(oracle.read_text())
            except (FileNotFoundError, json.JSONDecodeError):  # not written yet, or mid-write
                state = {"end_order": [], "ongoing_trials": {}}
            if len(state["end_order"]) == 1 and state["ongoing_trials"]:
                break
            time.sleep(0.05)
        else:
            raise AssertionError("the search never reached its second trial")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # both at once, as a power cut would
        proc.wait()
    # Almost every kill lands mid-trial; one that lands as the trial ends leaves none running.
    interrupted = json.loads(oracle.read_text())["ongoing_trials"].get("tuner0")
    if interrupted is not None:
        assert trials_of(logs, "smoke")[f"trial_{interrupted}"]["status"] == "RUNNING"

    done = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "Resuming study smoke" in done.stdout
    trials = trials_of(logs, "smoke")
    assert len(trials) == 4 and all(t["status"] == "COMPLETED" for t in trials.values())
    if interrupted is not None:
        assert f"(id {interrupted})" in done.stdout  # the interrupted trial ran again


def test_second_search_on_a_study_in_use_is_refused(tmp_path, run_cli, tiny):
    with Study("smoke", tmp_path).lock():
        code, _, err = run_cli("search", "--space", "smoke", *tiny, "--logs", tmp_path)
    assert code == 2 and "study 'smoke' is in use by pid" in err


@pytest.mark.slow
def test_time_budget_stops_cleanly_and_a_rerun_continues(tmp_path, run_cli, smoke_search):
    argv = smoke_search(2, "--logs", tmp_path)
    code, out, _ = run_cli(*argv, "--time-budget", "0.01s")
    assert code == 0 and "stopped after 0 of 2 trials" in out and "--time-budget" in out
    assert not trials_of(tmp_path, "smoke")
    code, out, _ = run_cli(*argv, "--time-budget", "2h")
    assert code == 0 and "2 trials completed" in out
    assert len(trials_of(tmp_path, "smoke")) == 2


@pytest.mark.slow
def test_bayesian_tuner_keeps_going_after_failed_trials(tmp_path, run_cli, tiny):
    path = tmp_path / "half_broken.toml"
    path.write_text(
        "[model]\nblocks = 3\nfilters_1 = 4\nfilters_2 = 4\nfilters_3 = 4\n"
        'kernel_size = {choice = [3, 9]}\npadding = "valid"\ndense_layers = 0\n'
        "[train]\nlearning_rate = {min = 1e-4, max = 1e-2, sampling = 'log'}\nepochs = 1\n"
    )
    code, out, _ = run_cli(
        "search",
        "--space",
        path,
        "--tuner",
        "bayesian",
        "--max-failures",
        "6",
        "--max-trials",
        "6",
        *tiny,
        "--logs",
        tmp_path / "logs",
    )
    assert code == 0, out
    statuses = [t["status"] for t in trials_of(tmp_path / "logs", "half_broken").values()]
    assert len(statuses) == 6 and "FAILED" in statuses and "COMPLETED" in statuses
    # Failed trials rank below every completed one.
    code, out, _ = run_cli(
        "results", "--study", "half_broken", "--logs", tmp_path / "logs", "--json"
    )
    rows = json.loads(out)
    done = [r["status"] != "failed" for r in rows]
    assert done == sorted(done, reverse=True)


@pytest.mark.slow
def test_hyperband_on_a_tiny_space_ends_with_a_sentence(tmp_path, run_cli, tiny):
    path = tmp_path / "two.toml"
    path.write_text(
        "[model]\nblocks = 1\nfilters_1 = {choice = [4, 8]}\ndense_layers = 0\n"
        "[train]\nepochs = 3\n"
    )
    code, out, _ = run_cli("search", "--space", path, *tiny, "--logs", tmp_path / "logs")
    assert code == 0
    assert "the space is exhausted for it" in out
