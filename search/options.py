"""What a search, a retraining or an export is asked to do: every default and every check of
an option's value, defined once.

Kept free of TensorFlow: the command line reads its defaults, choices and value checks from
here, so `digits --help` answers at once, and the modules that train read the same values.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from search.budget import parse_duration

TUNERS = ("hyperband", "random", "bayesian", "grid")
OBJECTIVE = "val_accuracy"  # what every tuner maximises, on the study's validation split
EXPORT_FORMATS = ("keras", "savedmodel", "tflite")
MODELS_ROOT = Path("best_models")  # where `digits export` writes, one folder per model
# Keras keeps some memory of every model a process has built (traced step functions outlive
# `clear_session`), about 2 MiB per small trial. A searching process whose memory grew by
# RECYCLE_MIB since its first trial leaves with RECYCLE_EXIT, and the command that started
# it starts a fresh one, which resumes the study (`search.processes.recycled`).
RECYCLE_MIB = 32.0
RECYCLE_EXIT = 75  # EX_TEMPFAIL: "try again"
SUPERVISED = "DIGITS_SUPERVISED"  # set in a process whose starter replaces it when it leaves
CONTINUES = "DIGITS_SEARCH_STARTED"  # set in each replacement: the search's start, Unix time


# The least value each count may take: the command line checks its flags against it, and
# `check_counts` what the Python API passes (a search's through `SearchOptions`).
AT_LEAST = {
    "max_trials": 1,
    "max_epochs": 1,
    "train_size": 1,
    "val_size": 1,
    "executions": 1,
    "patience": 1,
    "top": 1,
    "max_failures": 1,
    "seeds": 1,
    "epochs": 1,
}


def check_counts(**counts: Any) -> None:
    """Raise ValueError naming the first count given that is not a whole number of at least
    its `AT_LEAST` (None: not given)."""
    for name, value in counts.items():
        low = AT_LEAST[name]
        whole = isinstance(value, numbers.Integral) and not isinstance(value, bool)
        if value is not None and not (whole and value >= low):
            raise ValueError(f"{name}: must be a whole number of at least {low}, got {value!r}")


def check_time_budget(seconds: Any) -> None:
    """Raise ValueError unless `seconds` is None (no budget) or a finite positive number."""
    real = isinstance(seconds, numbers.Real) and not isinstance(seconds, bool)
    if seconds is not None and not (real and 0 < seconds < math.inf):
        raise ValueError(f"time_budget: must be a positive number of seconds, got {seconds!r}")


@dataclass(frozen=True)
class SearchOptions:
    """Everything a search needs besides the space; the CLI fills it from its flags.

    Raises:
        ValueError: an unknown tuner, a count that is not a whole number of at least
            `AT_LEAST`'s (keras-tuner would run something else: max_trials=-1 runs one), or
            a time budget that is not a positive number of seconds.
    """

    study: str
    tuner: str = "hyperband"
    max_trials: int | None = None
    max_epochs: int | None = None
    train_size: int | None = None
    val_size: int = 5000
    executions: int = 1
    patience: int = 3
    seed: int = 0
    data: str | None = None
    root: Path = Path("logs")
    overwrite: bool = False
    top: int = 5
    time_budget: float | None = None  # seconds; no trial starts that cannot finish in it
    strategy: str | None = None  # "mirrored": each trial on all local GPUs (tf.distribute)
    max_failures: int = 3  # consecutive failed trials that stop the search
    recycle: float = 0.0  # MiB of growth after which the process leaves (RECYCLE_EXIT); 0: never
    started: float | None = None  # Unix time the search began, when this process continues it

    def __post_init__(self) -> None:
        if self.tuner not in TUNERS:
            raise ValueError(f"tuner: {self.tuner!r} is none of {', '.join(TUNERS)}")
        check_counts(**{f.name: getattr(self, f.name) for f in fields(self) if f.name in AT_LEAST})
        check_time_budget(self.time_budget)

    @classmethod
    def from_args(cls, args: argparse.Namespace, **given: Any) -> SearchOptions:
        """Options from parsed command-line arguments of the same names, and `given`."""
        names = {f.name for f in dataclasses.fields(cls)} - set(given)
        return cls(**given, **{n: getattr(args, n) for n in names if hasattr(args, n)})


# `digits run --preset NAME`: a built-in space, how to search it, how to retrain its best
# configurations (search.pipeline runs them).
PRESETS: dict[str, dict[str, Any]] = {
    "quick": {  # the README's main job: within 15 minutes on a 2-core CPU
        "space": "quick",
        "search": {"tuner": "random", "max_trials": 4, "max_epochs": 2, "train_size": 10000},
        # As many epochs as the budget leaves, up to 24, the space's decay stretched over them
        # (on validation one member of 24 erred 27.0 times against 30.0 for 12; 3 seeds
        # each; BENCHMARKS.md, experiments); one member alone where two would get fewer
        # than budget.MIN_EPOCHS each.
        "retrain": {"top": 2, "seeds": 1, "epochs": 24},
        # Members also read the image turned a few degrees each way (search.ensemble): on
        # validation each quick member erred 3.1 images fewer with it, a pair 2.1 fewer.
        "tta": True,
        "time_budget": 15 * 60,
    },
    "seed": {  # the original write-up's families
        "space": "seed_v2",
        "search": {"tuner": "hyperband", "max_epochs": 6},
        "retrain": {"top": 3, "seeds": 1, "epochs": None},
    },
    "full": {  # the best accuracy within 2 hours on a 2-core CPU
        "space": "full",
        # Every one of the space's 6 configurations (dense width x learning rate), 3 epochs.
        "search": {"tuner": "grid", "max_epochs": 3, "train_size": 20000},
        # Five members of up to 40 epochs, each sized to the time left as it starts: on the
        # validation split 40 epochs erred less than 24 and 60 no less, and five different
        # configurations averaged better than three (BENCHMARKS.md, experiments).
        "retrain": {"top": 5, "seeds": 1, "epochs": 40},
        "time_budget": 2 * 3600,
    },
    "smoke": {  # for tests: seconds
        "space": "smoke",
        "search": {
            "tuner": "random",
            "max_trials": 2,
            "max_epochs": 1,
            "train_size": 600,
            "val_size": 200,
        },
        "retrain": {"top": 2, "seeds": 1, "epochs": 1},
    },
}


# Value checks, as argparse types: a bad value is one line naming the option and the problem.
def at_least(low: int, kind: type = int) -> Callable[[str], Any]:
    """A number of `kind` no lower than `low`."""

    def parse(text: str) -> Any:
        value = kind(text)
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names it in "invalid int value: 'x'"
    return parse


def count_type(name: str) -> Callable[[str], int]:
    """The flag type of count `name`: a whole number of at least its `AT_LEAST`."""
    return at_least(AT_LEAST[name])


def share(text: str) -> float:
    """A share of the images, in (0, 1]."""
    value = float(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be a share in (0, 1], got {value}")
    return value


def file_to_write(text: str) -> Path:
    """A file to write, which may not exist yet; not a folder."""
    if Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder; give a file name")
    return Path(text)


def folder_path(text: str) -> Path:
    """A folder (to read studies from or write into), which may not exist yet; not a file."""
    if Path(text).exists() and not Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a file, not a folder")
    return Path(text)


def duration(text: str) -> float:
    """Seconds of a duration as `budget.parse_duration` reads it: 45m, 2h, 1h30."""
    try:
        return parse_duration(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


# The command line's plumbing: defaults shown in --help, options shared by commands.
class DefaultsHelp(argparse.ArgumentDefaultsHelpFormatter):
    """Shows defaults, but not the empty ones ("default: None" says nothing)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def shared(*flags: str, **kwargs: Any) -> argparse.ArgumentParser:
    """An option several commands take, declared once (an argparse parent)."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(*flags, **kwargs)
    return parent
