"""Distributed search on keras-tuner's own chief/worker engine.

keras-tuner runs the oracle in a chief process as a gRPC service; workers, started with
KERASTUNER_TUNER_ID / KERASTUNER_ORACLE_IP / KERASTUNER_ORACLE_PORT, ask it for trials and
write their results into the shared study folder. This module adds what a user needs around
it: `--workers N` starts a chief and N workers on 127.0.0.1 and restarts a worker that dies
(under the same id, so the chief hands it back its unfinished trial); a worker that cannot
reach its chief says so within a bounded time instead of waiting for an hour.

keras-tuner has no notion of a dead worker: its chief waits for the trial of a worker that
never comes back, forever. So workers write a heartbeat into the shared study folder, and
the chief's watchdog gives the trial of a worker that went silent to the others, keeping
them from leaving while a trial may still come back (see `watch_workers`).
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import os
import socket
import subprocess
import time
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from search import space as space_mod
from search.processes import spawn, without_flag
from search.space import Space
from search.study import Study, StudyError, periodically, write_atomic

CONNECT_TIMEOUT = 60.0  # seconds a worker waits for its chief before giving up
WORKER_TIMEOUT = 60.0  # seconds of silence after which a chief gives a worker's trial away
MAX_RESTARTS = 3  # per worker, in a local distributed search
POLL = 0.5
BEAT = 2.0  # seconds between a worker's heartbeats


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def parse_address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise StudyError(
            f"chief address {text!r}: expected HOST:PORT with a port of 1-65535, e.g. 10.0.0.5:8000"
        )
    return host, int(port)


def check_servable(host: str, port: int) -> None:
    """Raise StudyError unless this machine can serve at `host`:`port`. keras-tuner's chief
    starts its gRPC server without checking that it bound, and would wait for workers that
    can never reach it (a port taken by another program, an address of another machine)."""
    try:
        found = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM)
        family, kind, proto, _, where = found[0]
        with socket.socket(family, kind, proto) as s:
            # As gRPC binds: a port whose last connections linger (a chief restarted) is free.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(where)
    except OSError as e:
        why = e.strerror or e
        raise StudyError(f"chief address {host}:{port}: cannot serve there ({why})") from None


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


def run_local(argv: list[str], study: Study, workers: int, console: Console) -> int:
    """A chief and `workers` workers on 127.0.0.1; returns the chief's exit status.

    `argv`: the `digits search` arguments, `--workers N` among them.
    """
    search_args = without_flag(argv, "--workers")
    port = free_port()
    address = f"127.0.0.1:{port}"
    chief = spawn([*search_args, "--chief", address], {})
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
            procs[i] = spawn(worker_args[i], {})
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
                procs[i] = spawn(worker_args[i], {})
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


def worker_settings(study: Study) -> tuple[Space, dict[str, Any]]:
    """The space and the search options a worker takes from the study record the chief
    wrote (the space's text, so every worker searches the chief's space)."""
    record = study.read()
    text, name = record["space_toml"], record["space"]["name"]
    space = space_mod.parse(tomllib.loads(text), Path(f"{name}.toml"), text)
    return space, {
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
    }


def join_chief(
    study: Study, address: str, worker_id: str, timeout: float = CONNECT_TIMEOUT
) -> tuple[Space, dict[str, Any]]:
    """Set this process up as worker `worker_id` of the chief at `address` (HOST:PORT), once
    it answers and its study record is there; returns the space and search options the
    record gives."""
    host, port = parse_address(address)
    wait_for_chief(host, port, timeout)
    wait_for_record(study, timeout)
    os.environ.update(oracle_env(host, port, worker_id))
    return worker_settings(study)


def wait_for_record(study: Study, timeout: float = CONNECT_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not study.record_path.exists():
        if time.monotonic() > deadline:
            raise StudyError(
                f"{study.record_path}: not written by the chief within "
                f"{timeout:.0f}s; do chief and worker share this folder?"
            )
        time.sleep(POLL)


def heartbeat_path(study: Study, tuner_id: str) -> Path:
    return study.workers_dir / f"{tuner_id}.json"


@contextlib.contextmanager
def heartbeat(study: Study, tuner_id: str) -> Iterator[None]:
    """Rewrite this worker's heartbeat file every BEAT seconds while the body runs.

    The chief compares the file's content, not its time stamp, so clocks of different
    machines need not agree. The first beat is written before the worker asks for a trial.
    """
    path = heartbeat_path(study, tuner_id)
    beats = itertools.count(1)

    def beat() -> None:
        info = {"pid": os.getpid(), "host": socket.gethostname(), "beat": next(beats)}
        write_atomic(path, json.dumps(info) + "\n")

    beat()
    try:
        with periodically(BEAT, beat, "heartbeat"):
            yield
    finally:
        path.unlink(missing_ok=True)


def be_chief(
    address: str, study: Study, timeout: float, console: Console
) -> Callable[[Any], contextlib.AbstractContextManager[list[str]]]:
    """Set this process up as the chief serving at `address` (HOST:PORT); returns what the
    search wraps its serving in: `watch_workers` on its oracle."""
    host, port = parse_address(address)
    check_servable(host, port)
    os.environ.update(oracle_env(host, port, "chief"))
    return functools.partial(watch_workers, study=study, timeout=timeout, console=console)


@contextlib.contextmanager
def watch_workers(
    oracle: Any, study: Study, timeout: float, console: Console
) -> Iterator[list[str]]:
    """In the chief, while it serves `oracle`: hand the trial of a silent worker to the others.

    A worker whose heartbeat has not changed for `timeout` seconds is taken off the oracle's
    books and its trial goes to keras-tuner's retry queue, where the next worker to ask
    picks it up. Workers are kept waiting (IDLE) instead of being sent home while a trial
    still trains somewhere, since it may come back to the queue; a late result for a trial
    that was already ended elsewhere is ignored, so no trial counts twice. Yields the list of
    what happened, filled while the body runs.
    """
    watch = WorkerWatch(oracle, study, timeout, console)
    with periodically(POLL, watch.check, "watchdog"):
        yield watch.events


class WorkerWatch:
    """The chief's side of `watch_workers`: the oracle's trial hand-out and hand-in, wrapped,
    and a check of every worker's heartbeat."""

    def __init__(self, oracle: Any, study: Study, timeout: float, console: Console):
        import keras_tuner as kt

        from search.kt_internals import replace_method

        self.oracle, self.study, self.timeout, self.console = oracle, study, timeout, console
        self.events: list[str] = []
        self.seen: dict[str, tuple[str, float]] = {}  # each worker's last beat, and when
        self.release = kt.synchronized(WorkerWatch._release)
        self.watched = kt.synchronized(WorkerWatch._watched)
        # keras-tuner's lock is per oracle: each replacement runs bound to it.
        create = kt.synchronized(self._create_trial).__get__(oracle)
        end = kt.synchronized(self._end_trial).__get__(oracle)
        self.create = replace_method(oracle, "create_trial", create)
        self.end = replace_method(oracle, "end_trial", end)

    def report(self, line: str) -> None:
        self.events.append(line)
        self.console.print(f"[yellow]{escape(line)}[/]")

    def _create_trial(self, oracle: Any, tuner_id: str) -> Any:
        from keras_tuner.engine import trial as trial_module

        trial = self.create(tuner_id)
        if trial.status == trial_module.TrialStatus.STOPPED and oracle.ongoing_trials:
            oracle.tuner_ids.add(tuner_id)  # keras-tuner removed it: it was sent home
            return trial_module.Trial(oracle.get_space(), status=trial_module.TrialStatus.IDLE)
        return trial

    def _end_trial(self, oracle: Any, trial: Any) -> None:
        if trial.trial_id in oracle.end_order:
            self.report(
                f"ignored a late result for trial {trial.trial_id}, already ended elsewhere"
            )
            return
        from search.kt_internals import drop_retry

        drop_retry(oracle, trial.trial_id)  # a silent worker came back and finished it
        self.end(trial)

    @staticmethod
    def _release(oracle: Any, tuner_id: str) -> str | None:
        oracle.tuner_ids.discard(tuner_id)
        trial = oracle.ongoing_trials.pop(tuner_id, None)
        if trial is None:
            return None
        from search.kt_internals import retry_later

        retry_later(oracle, trial.trial_id)
        oracle.save()
        return trial.trial_id

    @staticmethod
    def _watched(oracle: Any) -> set[str]:
        return set(oracle.tuner_ids) | set(oracle.ongoing_trials)

    def check(self) -> None:
        """Release the trial of every worker whose heartbeat stood still for `timeout`."""
        now = time.monotonic()
        for tuner_id in sorted(self.watched(self.oracle)):
            try:
                beat = heartbeat_path(self.study, tuner_id).read_text(encoding="utf-8")
            except FileNotFoundError:  # not started yet, or gone home: nothing to watch
                continue
            if self.seen.get(tuner_id, ("", 0.0))[0] != beat:
                self.seen[tuner_id] = (beat, now)
            elif now - self.seen[tuner_id][1] > self.timeout:
                trial_id = self.release(self.oracle, tuner_id)
                if trial_id is not None:
                    self.study.discard_curves(trial_id)
                during = f" during trial {trial_id}" if trial_id else ""
                back = f"; trial {trial_id} went back to the queue" if trial_id else ""
                self.report(
                    f"worker {tuner_id} went silent{during} (no heartbeat for "
                    f"{self.timeout:.0f}s){back}"
                )
