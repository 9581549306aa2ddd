"""Distributed search on keras-tuner's own chief/worker engine.

keras-tuner runs the oracle in a chief process as a gRPC service; workers, started with
KERASTUNER_TUNER_ID / KERASTUNER_ORACLE_IP / KERASTUNER_ORACLE_PORT, ask it for trials and
write their results into the shared study folder. This module adds what a user needs around
it: `--workers N` starts a chief and N workers on 127.0.0.1 and restarts a worker that dies
(under the same id, so the chief hands it back its unfinished trial); a worker that cannot
reach its chief says so within a bounded time instead of waiting for an hour.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

from rich.console import Console

from search.study import Study, StudyError

CONNECT_TIMEOUT = 60.0  # seconds a worker waits for its chief before giving up
MAX_RESTARTS = 3  # per worker, in a local distributed search
POLL = 0.5


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def parse_address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise StudyError(f"chief address {text!r}: expected HOST:PORT, e.g. 10.0.0.5:8000")
    return host, int(port)


def oracle_env(host: str, port: int, tuner_id: str) -> dict[str, str]:
    """The variables keras-tuner reads to join a distributed search."""
    return {
        "KERASTUNER_TUNER_ID": tuner_id,
        "KERASTUNER_ORACLE_IP": host,
        "KERASTUNER_ORACLE_PORT": str(port),
    }


def wait_for_chief(host: str, port: int, timeout: float = CONNECT_TIMEOUT) -> None:
    """Return once the chief's gRPC service answers; a clear error after `timeout` seconds."""
    import grpc

    channel = grpc.insecure_channel(f"{host}:{port}")
    try:
        grpc.channel_ready_future(channel).result(timeout=timeout)
    except grpc.FutureTimeoutError:
        raise StudyError(
            f"cannot reach the chief at {host}:{port} within {timeout:.0f}s; is "
            "`digits search ... --chief` running there, and is the port open?"
        ) from None
    finally:
        channel.close()


def _spawn(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "search", *args], env={**os.environ, **env})


def run_local(search_args: list[str], study: Study, workers: int, console: Console) -> int:
    """A chief and `workers` workers on 127.0.0.1; returns the chief's exit status.

    `search_args` are the `digits search` arguments without `--workers`.
    """
    port = free_port()
    address = f"127.0.0.1:{port}"
    chief = _spawn([*search_args, "--chief", address], {})
    ids = [f"worker{i}" for i in range(workers)]
    worker_args = {
        i: [
            "worker",
            "--chief",
            address,
            "--study",
            study.name,
            "--logs",
            str(study.root),
            "--id",
            i,
        ]
        for i in ids
    }
    procs: dict[str, subprocess.Popen] = {}
    restarts = dict.fromkeys(ids, 0)
    events: list[str] = []
    try:
        for i in ids:
            procs[i] = _spawn(worker_args[i], {})
        while chief.poll() is None:
            for i, proc in procs.items():
                code = proc.poll()
                if code in (None, 0):
                    continue
                if restarts[i] >= MAX_RESTARTS:
                    raise StudyError(
                        f"worker {i} failed {restarts[i] + 1} times (last status "
                        f"{code}); the study is kept, rerun the command to resume"
                    )
                restarts[i] += 1
                events.append(
                    f"worker {i} exited with status {code}; restarted it under the "
                    "same id, so it reruns the trial it was training"
                )
                console.print(f"[yellow]{events[-1]}[/]")
                procs[i] = _spawn(worker_args[i], {})
            time.sleep(POLL)
        for proc in procs.values():
            proc.wait(timeout=120)
    finally:
        for proc in [chief, *procs.values()]:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=30)
    if events:
        console.print(f"Distributed search: {len(events)} worker restart(s): " + "; ".join(events))
    return chief.returncode


def worker_options(study: Study) -> dict:
    """The search settings a worker takes from the study record the chief wrote."""
    record = study.read()
    return {
        "space_toml": record["space_toml"],
        "space_path": record["space"]["path"],
        "options": {
            "tuner": record["tuner"],
            "max_trials": record["max_trials"],
            "max_epochs": record["max_epochs"],
            "train_size": record["data"]["train"],
            "val_size": record["data"]["val"],
            "executions": record["executions"],
            "patience": record["patience"],
            "seed": record["seed"],
            "data": record["data"]["path"],
            "strategy": record.get("strategy"),
        },
    }


def wait_for_record(study: Study, timeout: float = CONNECT_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not study.record_path.exists():
        if time.monotonic() > deadline:
            raise StudyError(
                f"{study.record_path}: not written by the chief within "
                f"{timeout:.0f}s; do chief and worker share this folder?"
            )
        time.sleep(POLL)
