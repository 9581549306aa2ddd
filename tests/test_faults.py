"""Killed at any moment, damaged by hand: the study says what is wrong or carries on."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import smoke_run

pytestmark = pytest.mark.slow  # trains models or starts processes: seconds each


def test_run_killed_during_retraining_resumes_to_the_end(tmp_path, mnist_subset):
    argv = [sys.executable, "-m", "search", *smoke_run(mnist_subset, tmp_path)]
    proc = subprocess.Popen(
        argv, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    retrain = tmp_path / "logs" / "smoke" / "retrain"
    try:
        deadline = time.monotonic() + 180
        while not retrain.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert retrain.exists(), "never reached retraining"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert not (tmp_path / "models" / "smoke").exists()
    done = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert len(list(retrain.glob("*/manifest.json"))) == 2
    assert (tmp_path / "models" / "smoke" / "model.keras").is_file()
    assert "Test accuracy" in done.stdout


@pytest.mark.parametrize("damaged", ["study.json", "tuner/trial_0/trial.json"])
def test_a_damaged_study_file_is_named(tmp_path, run_cli, smoke_search, damaged):
    argv = smoke_search(1, "--logs", tmp_path)
    assert run_cli(*argv)[0] == 0
    path = tmp_path / "smoke" / damaged  # cut short, as by a machine dying mid-write
    path.write_text(path.read_text()[:50])
    code, _, err = run_cli(*argv)
    assert code == 2 and f"{path}: damaged JSON" in err
    assert (tmp_path / "smoke" / "tuner" / "oracle.json").is_file()
