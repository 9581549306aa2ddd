"""Shared helpers: tiny datasets in tmp_path, a stand-in model, the CLI called in-process."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from search.quiet import TF_ENV

os.environ.update({**TF_ENV, **os.environ})  # TensorFlow as the toolkit runs it

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


@pytest.fixture
def stand_in_model(tmp_path) -> Path:
    """A `.keras` file of an untrained digit model ([N, 28, 28] -> 10 scores), seeded: where
    any model will do, as long as the same digits reach it the same way."""
    import keras

    keras.utils.set_random_seed(0)
    net = keras.Sequential([keras.Input((28, 28)), keras.layers.Flatten(), keras.layers.Dense(10)])
    net.save(tmp_path / "digits.keras")
    return tmp_path / "digits.keras"


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


def copy_of(logs: Path, tmp_path: Path) -> Path:
    """A copy of a shared fixture's logs folder, for a test that changes it."""
    return Path(shutil.copytree(logs, tmp_path / "logs"))


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
def run_cli(capfd):
    """Call `digits` in-process; return (exit status, stdout, stderr), the output of the
    processes it starts included (a search trains in a child process)."""
    from search.cli import main

    def run(*argv: str) -> tuple[int, str, str]:
        code = main([str(a) for a in argv])
        out = capfd.readouterr()
        return code, out.out, out.err

    return run


# How a user loads each exported format with plain Keras/TensorFlow; `x` and `model` are given.
LOADERS = {
    "keras": """
import keras
probs = keras.saving.load_model(f"{model}/model.keras").predict(x, verbose=0)
""",
    "savedmodel": """
import tensorflow as tf
loaded = tf.saved_model.load(f"{model}/saved_model")
probs = loaded.serve(tf.constant(x)).numpy()
probs_nhwc = loaded.serve_nhwc(tf.constant(x[..., None])).numpy()
assert np.allclose(probs, probs_nhwc, atol=1e-6)
""",
    "tflite": """
import tensorflow as tf
interpreter = tf.lite.Interpreter(model_path=f"{model}/model.tflite")
inp = interpreter.get_input_details()[0]
interpreter.resize_tensor_input(inp["index"], x.shape)
interpreter.allocate_tensors()
assert inp["dtype"] == np.uint8
interpreter.set_tensor(inp["index"], x)
interpreter.invoke()
probs = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
""",
}


def exported_probs(model: Path, fmt: str, x: np.ndarray, tmp_path: Path) -> np.ndarray:
    """Probabilities for `x` from the `fmt` file of the export in `model`, computed in a fresh
    Python process that cannot import this project."""
    np.save(tmp_path / "x.npy", x)
    code = (
        "import sys; sys.modules['search'] = None  # importing the project would now fail\n"
        "import os; os.environ['TF_CPP_MIN_LOG_LEVEL'] = '3'\n"
        f"import numpy as np; x = np.load({str(tmp_path / 'x.npy')!r})\n"
        f"model = {str(model)!r}\n"
        + LOADERS[fmt]
        + f"np.save({str(tmp_path / 'probs.npy')!r}, probs)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return np.load(tmp_path / "probs.npy")
