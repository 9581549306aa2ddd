"""Shared helpers: tiny datasets written to tmp_path, and the CLI called in-process."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# Small budgets keep a whole search to seconds on two cores.
TINY = ["--train-size", "600", "--val-size", "200"]


@pytest.fixture
def tiny() -> list[str]:
    return list(TINY)


@pytest.fixture(scope="session")
def finished_study(tmp_path_factory) -> Path:
    """The logs folder of a finished 3-trial random search on the smoke space."""
    from search.cli import main

    logs = tmp_path_factory.mktemp("finished") / "logs"
    argv = ["search", "--space", "smoke", "--tuner", "random", "--max-trials", "3", *TINY]
    assert main([*argv, "--logs", str(logs)]) == 0
    return logs


@pytest.fixture
def tiny_arrays() -> dict[str, np.ndarray]:
    """A small random digit-shaped dataset with every class present."""
    rng = np.random.default_rng(0)
    return {
        "x_train": rng.integers(0, 256, (300, 28, 28), dtype=np.uint8),
        "y_train": np.tile(np.arange(10, dtype=np.uint8), 30),
        "x_test": rng.integers(0, 256, (50, 28, 28), dtype=np.uint8),
        "y_test": np.tile(np.arange(10, dtype=np.uint8), 5),
    }


@pytest.fixture
def run_cli(capsys):
    """Call `digits` in-process; return (exit status, stdout, stderr)."""
    from search.cli import main

    def run(*argv: str) -> tuple[int, str, str]:
        code = main([str(a) for a in argv])
        out = capsys.readouterr()
        return code, out.out, out.err

    return run
