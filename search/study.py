"""The study folder `logs/<study>/`: its paths, its record `study.json`, a lock, atomic writes.

Layout:
    logs/<study>/study.json      what was searched and how (space, command, versions, data)
    logs/<study>/tuner/          keras-tuner's own state (oracle.json, trial_*/)
    logs/<study>/tensorboard/    one folder per trial: scalars per epoch and HParams
    logs/<study>/workers/        heartbeats of a distributed search's workers
    logs/<study>/run_time.json   seconds of each part of a `digits run` (interrupted, resumed)
    logs/<study>/.lock           held while a command works on the study
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import platform
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

DEFAULT_ROOT = Path("logs")
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
VERSIONED_PACKAGES = ("tensorflow", "keras", "keras-tuner", "tensorboard", "numpy")
RUN_CLOCK_EVERY = 10.0  # seconds: an interrupted `digits run` loses at most this of its time


class StudyError(Exception):
    """A problem with a study folder; the message names the study or file."""


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A fresh temporary path beside `path` for the body to write; moved over `path` when the
    body returns, removed when it raises, so a reader sees the old file or the new one, never
    half. It ends in `path`'s suffix, because Keras and numpy choose a file's format by it.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, 0o644)  # mkstemp makes it private; these are ordinary shared files
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` so a reader sees the old file or the new one, never half."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


@contextlib.contextmanager
def periodically(seconds: float, work: Callable[[], None], name: str) -> Iterator[None]:
    """Call `work` every `seconds` from a background thread while the body runs (heartbeats,
    clocks, watchdogs: the files a study folder keeps up to date)."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(seconds):
            work()

    thread = threading.Thread(target=loop, name=name, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def read_json(path: Path) -> dict[str, Any]:
    """Read a JSON object, naming the file when it is missing or damaged."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StudyError(f"{path}: missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise StudyError(f"{path}: damaged JSON ({e}); restore it or start over") from None
    if not isinstance(value, dict):
        raise StudyError(f"{path}: expected a JSON object")
    return value


def versions() -> dict[str, str]:
    """Versions of Python and the libraries a result depends on."""
    found = {"python": platform.python_version()}
    for name in VERSIONED_PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


@dataclass(frozen=True)
class Study:
    """A study folder; creating the object touches nothing on disk."""

    name: str
    root: Path = DEFAULT_ROOT

    def __post_init__(self) -> None:
        if not NAME_PATTERN.match(self.name):
            raise StudyError(f"study name {self.name!r}: use letters, digits, '.', '_' or '-' only")

    @property
    def dir(self) -> Path:
        return self.root / self.name

    @property
    def record_path(self) -> Path:
        return self.dir / "study.json"

    @property
    def tuner_dir(self) -> Path:
        return self.dir / "tuner"

    @property
    def tensorboard_dir(self) -> Path:
        return self.dir / "tensorboard"

    @property
    def workers_dir(self) -> Path:
        return self.dir / "workers"

    def discard_curves(self, trial_id: str) -> None:
        """Drop the TensorBoard logs of a trial that is going to run again from the start."""
        shutil.rmtree(self.tensorboard_dir / str(trial_id), ignore_errors=True)

    def exists(self) -> bool:
        return self.record_path.exists()

    def read(self) -> dict[str, Any]:
        if not self.dir.exists():
            raise StudyError(f"no study '{self.name}' in {self.root}/")
        return read_json(self.record_path)

    def write(self, record: dict[str, Any]) -> None:
        write_atomic(self.record_path, json.dumps(record, indent=2, sort_keys=False) + "\n")

    def remove(self) -> None:
        """Delete everything of the study but the lock the caller holds."""
        for child in self.dir.iterdir():
            if child.name == ".lock":
                continue
            if child.is_dir():
                shutil.rmtree(child)
            else:
                child.unlink()

    @contextlib.contextmanager
    def run_clock(self, every: float = RUN_CLOCK_EVERY) -> Iterator[Callable[[], list[float]]]:
        """Time spent on the study by `digits run`, over every part of an interrupted run.

        Yields a function giving the seconds of each part so far, this one last. A thread
        records them in `run_time.json` every `every` seconds (once the study folder exists),
        so a resumed run knows what its earlier parts spent, to within that much.
        """
        path = self.dir / "run_time.json"
        earlier = read_json(path)["parts"] if path.exists() else []
        start = time.monotonic()

        def parts() -> list[float]:
            return [*earlier, round(time.monotonic() - start, 1)]

        def record() -> None:
            if self.dir.exists():
                write_atomic(path, json.dumps({"parts": parts()}) + "\n")

        try:
            with periodically(every, record, "run-clock"):
                yield parts
        finally:
            record()

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold an exclusive lock on the study; refuse at once if another process has it."""
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir / ".lock", "a+") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                f.seek(0)
                holder = f.read().strip() or "another process"
                raise StudyError(
                    f"study '{self.name}' is in use by {holder}; "
                    "wait for it to finish or pick another --study"
                ) from None
            f.seek(0)
            f.truncate()
            f.write(f"pid {os.getpid()}")
            f.flush()
            try:
                yield
            finally:
                f.truncate(0)
                fcntl.flock(f, fcntl.LOCK_UN)


def new_record(command: str, **fields: Any) -> dict[str, Any]:
    """A study record with the provenance every study keeps (`commands`: every run of it)."""
    return {
        **fields,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "commands": [command],
        "versions": versions(),
        "platform": platform.platform(),
    }
