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


def random_smoke(trials: int) -> list[str]:
    """`digits search` arguments: a random search of `trials` trials on the smoke space."""
    return ["search", "--space", "smoke", "--tuner", "random", "--max-trials", str(trials)]


@pytest.fixture
def smoke_search():
    """`smoke_search(trials, *more)`: random smoke search arguments on a tiny subset."""

    def argv(trials: int, *more: object) -> list[str]:
        return [*random_smoke(trials), *TINY, *map(str, more)]

    return argv


def smoke_run(data: Path, root: Path) -> list[str]:
    """`digits run --preset smoke` arguments on `data`, with logs and models under `root`."""
    return [
        "run",
        "--preset",
        "smoke",
        "--data",
        str(data),
        "--logs",
        str(root / "logs"),
        "--models",
        str(root / "models"),
    ]


@pytest.fixture(scope="session")
def mnist_subset(tmp_path_factory) -> Path:
    """The first 3,000 training and 500 test images of MNIST, as a Keras-layout .npz."""
    from search import data

    d = data.load()
    path = tmp_path_factory.mktemp("data") / "mnist_subset.npz"
    np.savez(
        path,
        x_train=d.x_train[:3000],
        y_train=d.y_train[:3000],
        x_test=d.x_test[:500],
        y_test=d.y_test[:500],
    )
    return path


@pytest.fixture(scope="session")
def finished_study(tmp_path_factory) -> Path:
    """The logs folder of a finished 3-trial random search on the smoke space."""
    from search.cli import main

    logs = tmp_path_factory.mktemp("finished") / "logs"
    argv = [*random_smoke(3), *TINY]
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
