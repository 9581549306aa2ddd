"""Every use of keras-tuner's internals, in one place (keras-tuner 1.4).

Where keras-tuner offers no public hook, the toolkit reaches inside it here and nowhere else:
a debug switch, the oracle's queue of trials to retry, two methods wrapped on one object, and
the grid oracle's place in its grid.
`tests/test_kt_internals.py` checks each against the installed keras-tuner and fails, naming
the piece, if a release moves it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from keras_tuner.src import config as kt_config
from keras_tuner.src.tuners import gridsearch


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


class ResumableGridOracle(gridsearch.GridSearchOracle):
    """keras-tuner's grid oracle, able to resume.

    It keeps its place in the grid (`_ordered_ids`, trials in grid order; `_populate_next`,
    trials whose successor is still to be made) in memory only, so a reloaded grid search
    stops at once or fails with a KeyError (keras-tuner #1055). Both are rebuilt here from
    the reloaded trials: every trial in grid order, and every ended one queued again, which
    the oracle allows ("a trial_id can be pushed into _populate_next multiple times").
    """

    def set_state(self, state: dict[str, Any]) -> None:
        super().set_state(state)

        def order(a: str, b: str) -> int:
            values = self.trials[a].hyperparameters.values, self.trials[b].hyperparameters.values
            return self._compare(*values)

        self._ordered_ids = gridsearch.LinkedList()
        for trial_id in sorted(self.trials, key=functools.cmp_to_key(order)):
            self._ordered_ids.insert(trial_id)
        self._populate_next = [t for t in self.end_order if t in self.trials]
