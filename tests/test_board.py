"""A real TensorBoard, started by `digits board`, read over HTTP on 127.0.0.1."""

from __future__ import annotations

import http.server
import json
import socket
import subprocess
import sys
import threading
import time
import urllib.request

import pytest

pytestmark = pytest.mark.slow  # trains models or starts processes: seconds each


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(url: str, body: dict) -> dict:
    request = urllib.request.Request(
        url, json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


@pytest.fixture
def board(finished_study, tmp_path):
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "search",
            "board",
            "--port",
            str(port),
            "--logs",
            str(finished_study),
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        line = proc.stdout.readline()  # printed once TensorBoard answers
        assert f"http://127.0.0.1:{port}/" in line, line
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    # Stopping `digits board` stops its TensorBoard: nothing answers on the port any more.
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5)


def session_groups(base: str, expected: int, timeout: float = 60) -> list[dict]:
    """TensorBoard loads runs in the background: ask until every trial is there."""
    query = {
        "experimentName": "",
        "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"],
        "colParams": [],
        "startIndex": 0,
        "sliceSize": 100,
    }
    deadline = time.monotonic() + timeout
    while True:
        groups = post(f"{base}/data/plugin/hparams/session_groups", query).get("sessionGroups", [])
        if len(groups) >= expected or time.monotonic() > deadline:
            return groups
        time.sleep(1)


def test_every_trial_is_in_the_hparams_dashboard(board, finished_study):
    trials = {
        json.loads(p.read_text())["trial_id"]: json.loads(p.read_text())
        for p in (finished_study / "smoke" / "tuner").glob("trial_*/trial.json")
    }
    groups = {g["name"]: g for g in session_groups(board, len(trials))}
    assert set(groups) == set(trials)
    for trial_id, trial in trials.items():
        group = groups[trial_id]
        values = trial["hyperparameters"]["values"]
        assert group["hparams"]["filters_1"] == values["filters_1"]
        assert group["hparams"]["learning_rate"] == pytest.approx(values["learning_rate"])
        metrics = {
            (m["name"]["group"], m["name"]["tag"]): m["value"] for m in group["metricValues"]
        }
        # The last epoch's validation accuracy; the trial's score is its best epoch's.
        assert 0 < metrics[("validation", "epoch_accuracy")] <= trial["score"] + 1e-6
        # The trial's score over its executions (one here), with their spread.
        assert metrics[("search", "val_accuracy_mean")] == pytest.approx(trial["score"])
        assert metrics[("search", "val_accuracy_std")] == 0
    experiment = post(f"{board}/data/plugin/hparams/experiment", {"experimentName": ""})
    names = {h["name"] for h in experiment["hparamInfos"]}
    assert {"filters_1", "learning_rate"} <= names


def test_a_port_another_server_answers_on_is_refused_in_one_line(tmp_path, run_cli):
    (tmp_path / "logs").mkdir()
    other = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    port = other.server_address[1]
    try:
        code, out, err = run_cli("board", "--port", port, "--logs", tmp_path / "logs")
    finally:
        other.shutdown()
        other.server_close()
    assert code == 2 and err.strip().endswith(
        f"port {port} on 127.0.0.1 is in use (another board?); pass --port"
    )
    assert "TensorBoard on" not in out
