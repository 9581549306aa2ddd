"""Distributed search on loopback: a chief and workers in separate processes, faults included.

Each test is bounded in time and cleans up its processes."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rich.console import Console

from search.study import Study, StudyError

pytestmark = pytest.mark.slow  # trains models or starts processes: seconds each

SEARCH = [
    "search",
    "--space",
    "smoke",
    "--tuner",
    "random",
    "--max-trials",
    "4",
    "--val-size",
    "200",
]


WORKER = [sys.executable, "-m", "search", "worker"]


def digits(*args: str, cwd: Path, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "search", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        **kwargs,
    )


def trials(logs: Path) -> list[dict]:
    folder = logs / "smoke" / "tuner"
    return [json.loads(p.read_text()) for p in sorted(folder.glob("trial_*/trial.json"))]


def workers_of(logs: Path) -> list[str]:
    folder = logs / "smoke" / "tuner"
    return [json.loads(p.read_text())["worker"] for p in folder.glob("trial_*/stats.json")]


def test_chief_and_two_workers_run_every_trial_once(tmp_path):
    logs = tmp_path / "logs"
    done = digits(
        *SEARCH, "--train-size", "600", "--workers", "2", "--logs", str(logs), cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr[-2000:]
    found = trials(logs)
    assert sorted(t["trial_id"] for t in found) == ["0", "1", "2", "3"]
    assert all(t["status"] == "COMPLETED" for t in found)
    assert set(workers_of(logs)) == {"worker0", "worker1"}  # both contributed
    assert "4 trials completed, 0 failed, 4 of 4 planned" in done.stdout
    runs = {p.name for p in (logs / "smoke" / "tensorboard").iterdir()}
    assert runs == {"0", "1", "2", "3"}  # every worker's curves in the one study


def _pids(pattern: str) -> list[int]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if pattern in text:
            found.append(int(cmdline.parent.name))
    return found


def ongoing_trial(logs: Path, worker: str, timeout: float = 120) -> str:
    """Wait until `worker` trains a trial (as the chief's oracle.json says); its id."""
    oracle = logs / "smoke" / "tuner" / "oracle.json"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            ongoing = json.loads(oracle.read_text())["ongoing_trials"]
        except (FileNotFoundError, json.JSONDecodeError, KeyError):
            ongoing = {}
        if worker in ongoing:
            time.sleep(1.0)  # inside its training
            return ongoing[worker]
        time.sleep(0.1)
    pytest.fail(f"{worker} never started a trial")


def test_a_worker_killed_mid_trial_is_replaced_and_its_trial_rerun(tmp_path):
    logs = tmp_path / "logs"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "search",
            *SEARCH,
            "--train-size",
            "3000",
            "--workers",
            "2",
            "--logs",
            str(logs),
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        victim = ongoing_trial(logs, "worker0")
        pids = _pids(f"--logs {logs} --id worker0")
        assert pids, "worker0 not found"
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        out, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0
    assert "worker worker0 exited with status -9; restarted it" in out
    found = trials(logs)
    assert len(found) == 4 and all(t["status"] == "COMPLETED" for t in found)
    assert f"worker0: Trial {int(victim) + 1}/4 (id {victim})" in out


def test_a_dead_worker_on_another_machine_has_its_trial_finished_by_the_others(tmp_path):
    """No supervisor restarts it: the chief notices the silence and hands its trial on."""
    from search.distribute import free_port

    logs = tmp_path / "logs"
    address = f"127.0.0.1:{free_port()}"
    common = dict(cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    chief = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "search",
            *SEARCH,
            "--train-size",
            "3000",
            "--chief",
            address,
            "--worker-timeout",
            "10",
            "--logs",
            str(logs),
        ],
        **common,
    )
    workers = {
        i: subprocess.Popen(
            [*WORKER, "--chief", address, "--study", "smoke", "--logs", str(logs), "--id", i],
            **common,
        )
        for i in ("worker0", "worker1")
    }
    try:
        victim = ongoing_trial(logs, "worker0")
        workers["worker0"].kill()
        out, _ = chief.communicate(timeout=300)
        workers["worker1"].wait(timeout=60)
    finally:
        for proc in [chief, *workers.values()]:
            if proc.poll() is None:
                proc.kill()
    assert chief.returncode == 0, out[-2000:]
    assert f"worker worker0 went silent during trial {victim}" in out
    assert "4 trials completed, 0 failed, 4 of 4 planned" in out
    found = trials(logs)
    assert len(found) == 4 and all(t["status"] == "COMPLETED" for t in found)
    stats = json.loads((logs / "smoke" / "tuner" / f"trial_{victim}" / "stats.json").read_text())
    assert stats["worker"] == "worker1"  # the survivor finished the dead worker's trial


def test_a_worker_without_a_chief_fails_fast_and_clearly(tmp_path):
    started = time.monotonic()
    done = digits(
        "worker",
        "--chief",
        "127.0.0.1:9",
        "--study",
        "smoke",
        "--connect-timeout",
        "2",
        "--logs",
        str(tmp_path),
        cwd=tmp_path,
    )
    assert done.returncode == 2
    assert "cannot reach the chief at 127.0.0.1:9 within 2s" in done.stderr
    assert time.monotonic() - started < 60


def test_mirrored_strategy_runs_on_two_logical_cpus(tmp_path):
    argv = [
        *SEARCH[:-4],
        "--max-trials",
        "1",
        "--train-size",
        "600",
        "--val-size",
        "200",
        "--strategy",
        "mirrored",
        "--logs",
        str(tmp_path / "logs"),
        "--recycle",
        "0",  # train in this process, where the two logical devices are set up
    ]
    code = f"""
import os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from search.cli import main
sys.exit(main({argv!r}))
"""
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "no GPU here; --strategy mirrored trains on the CPU (2 logical device(s))" in done.stderr
    assert [t["status"] for t in trials(tmp_path / "logs")] == ["COMPLETED"]


def test_watchdog_requeues_a_silent_workers_trial_and_ignores_its_late_result(tmp_path):
    """The chief's side alone, on a real keras-tuner oracle, without training."""
    import io

    import keras_tuner as kt
    from rich.console import Console

    from search.distribute import heartbeat, heartbeat_path, watch_workers
    from search.study import Study

    study = Study("s", tmp_path)
    hp = kt.HyperParameters()
    hp.Choice("a", [1, 2, 3, 4])
    oracle = kt.oracles.RandomSearchOracle(
        objective=kt.Objective("score", "max"), max_trials=2, hyperparameters=hp
    )
    oracle._set_project_dir(str(tmp_path), "tuner")

    def finish(trial: kt.engine.trial.Trial) -> None:
        oracle.update_trial(trial.trial_id, {"score": 1.0})
        trial.status = "COMPLETED"
        oracle.end_trial(trial)

    quiet = Console(file=io.StringIO())
    with watch_workers(oracle, study, 3.0, quiet) as events, heartbeat(study, "alive"):
        heartbeat_path(study, "dead").write_text("one beat, then nothing")
        lost = oracle.create_trial("dead")
        own = oracle.create_trial("alive")
        finish(own)
        # The budget is spent, but 'dead' still holds a trial: 'alive' is kept waiting.
        assert oracle.create_trial("alive").status == "IDLE"
        deadline = time.monotonic() + 20
        while not events and time.monotonic() < deadline:
            time.sleep(0.1)
        assert events == [
            f"worker dead went silent during trial {lost.trial_id} (no heartbeat for 3s); "
            f"trial {lost.trial_id} went back to the queue"
        ]
        rerun = oracle.create_trial("alive")
        assert rerun.trial_id == lost.trial_id
        finish(rerun)
        assert oracle.create_trial("alive").status == "STOPPED"
        finish(lost)  # the silent worker was only slow: its result comes in late
    assert events[-1] == f"ignored a late result for trial {lost.trial_id}, already ended elsewhere"
    assert oracle.end_order == [own.trial_id, lost.trial_id]
    assert not heartbeat_path(study, "alive").exists()  # a worker that ends removes its beat


def stats(logs: Path) -> list[dict]:
    folder = logs / "smoke" / "tuner"
    return [json.loads(p.read_text()) for p in sorted(folder.glob("trial_*/stats.json"))]


@pytest.mark.parametrize("tuner", ["random", "grid"])  # grid: keras-tuner #1055
def test_a_search_carries_on_in_fresh_processes_and_reads_as_one(tmp_path, tuner):
    logs = tmp_path / "logs"
    args = [*SEARCH, "--train-size", "600", "--logs", str(logs), "--overwrite", "--tuner", tuner]
    done = digits(*args, "--recycle", "0.001", cwd=tmp_path)  # a fresh process nearly each trial
    assert done.returncode == 0, done.stderr[-2000:]
    assert len({s["pid"] for s in stats(logs)}) > 1
    assert all(t["status"] == "COMPLETED" for t in trials(logs)) and len(trials(logs)) == 4
    out = done.stdout
    assert out.count("Starting study smoke") == 1  # --overwrite only for the first process
    assert "Resuming" not in out and "Reloading" not in out
    assert out.count("4 trials completed, 0 failed, 4 of 4 planned") == 1
    for i in range(4):
        assert out.count(f"Trial {i + 1}/4 (id {i})") == 1


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has stopped; in a container nobody may reap it


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL])
def test_a_search_stopped_by_a_signal_stops_its_training_process(tmp_path, how):
    logs = tmp_path / "logs"
    args = [*SEARCH, "--train-size", "3000", "--logs", str(logs)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "search", *args],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        ongoing_trial(logs, "tuner0")
        child = [p for p in _pids(f"--logs {logs}") if p != proc.pid]
        assert len(child) == 1
        proc.send_signal(how)
        assert proc.wait(timeout=60) in (128 + signal.SIGTERM, -signal.SIGKILL)
        deadline = time.monotonic() + 30
        while alive(child[0]) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not alive(child[0])
    finally:
        if proc.poll() is None:
            proc.kill()
    assert digits(*args, cwd=tmp_path).returncode == 0  # and the study resumes


def test_a_chief_address_it_cannot_serve_at_is_refused_before_the_search(tmp_path):
    import socket

    from search.distribute import be_chief

    study = Study("s", tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for address, message in [
            (f"127.0.0.1:{port}", f"127.0.0.1:{port}: cannot serve there (Address already in use)"),
            ("127.0.0.1:99999", "expected HOST:PORT with a port of 1-65535"),
            ("127.0.0.1:port", "expected HOST:PORT"),
        ]:
            with pytest.raises(StudyError, match=re.escape(message)):
                be_chief(address, study, 60, Console(quiet=True))
    assert "KERASTUNER_ORACLE_PORT" not in os.environ  # nothing set up for keras-tuner
