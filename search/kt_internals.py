"""Every use of keras-tuner's internals, in one place (keras-tuner 1.4).

Where keras-tuner offers no public hook, the toolkit reaches inside it here and nowhere else:
a debug switch, the oracle's queue of trials to retry, and two methods wrapped on one object.
`tests/test_kt_internals.py` checks each against the installed keras-tuner and fails, naming
the piece, if a release moves it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from keras_tuner.src import config as kt_config


def quiet_failed_trials() -> None:
    """Stop keras-tuner printing the whole traceback of every failed trial (its `DEBUG`
    switch): the search reports the reason in one line, and the traceback stays in the
    trial's trial.json."""
    kt_config.DEBUG = False


def retry_later(oracle: Any, trial_id: str) -> None:
    """Put a trial on the oracle's retry queue: the next worker that asks gets it."""
    oracle._retry_queue.append(trial_id)


def drop_retry(oracle: Any, trial_id: str) -> None:
    """Take a trial off the retry queue (its worker came back and finished it)."""
    if trial_id in oracle._retry_queue:
        oracle._retry_queue.remove(trial_id)


def replace_method(obj: Any, name: str, new: Callable) -> Callable:
    """Put `new` in place of `obj.name` on this one object; return the original.

    For the oracle a chief serves and the oracle client of a worker: keras-tuner builds both
    inside its tuners, so they cannot be subclassed from outside.
    """
    original = getattr(obj, name)
    setattr(obj, name, new)
    return original
