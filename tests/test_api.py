"""search.api: the README's Python example, run as a user would run it."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from search import api, data, predict
from search.predict import ImageError
from search.space import SpaceError

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_example() -> str:
    section = README.read_text().split("## Python API", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.mark.slow
def test_the_readme_example_runs_and_its_numbers_are_real(tmp_path):
    # The example's `my_digits`: test images the model never saw in the search.
    setup = textwrap.dedent(
        """
        from search import data
        my_digits = data.load().x_test[:20]
        """
    )
    check = textwrap.dedent(
        """
        import json
        labels = data.load().y_test[:20]
        assert probs.shape == (20, 10)
        assert abs(probs.sum(axis=1) - 1).max() < 1e-4
        assert (probs.argmax(axis=1) == labels).mean() > 0.5
        assert best["val_std"] is not None and len(best["val_scores"]) == 2
        assert best["val_accuracy"] == max(r["val_accuracy"] for r in api.trials(study))
        assert (model / "model.keras").is_file()
        print("RESULT", json.dumps(evaluation["ensemble"]))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", setup + readme_example() + check],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "RESULT" in done.stdout and "epoch 1/1" in done.stdout  # progress=print
    # The study is an ordinary one: the command line reads it.
    listed = subprocess.run(
        [sys.executable, "-m", "search", "results", "--study", "notebook"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert listed.returncode == 0 and "Study notebook: 4 trials" in listed.stdout


def test_a_space_given_as_a_dict_is_validated_like_a_file():
    space = api.load_space({"train": {"learning_rate": {"choice": [1e-3, 3e-3]}}}, "mine")
    assert space.name == "mine" and space.size() == 2 and "learning_rate" in space.source
    with pytest.raises(SpaceError, match=r"mine.toml: \[train\] unknown key 'learnig_rate'"):
        api.load_space({"train": {"learnig_rate": 1e-3}}, "mine")
    assert api.load_space("smoke").name == "smoke"


@pytest.mark.slow
def test_trials_come_as_a_dataframe_where_pandas_is_installed(finished_study):
    rows = api.trials("smoke", root=finished_study)
    assert [r["trial"] for r in rows] and rows[0]["val_accuracy"] >= rows[-1]["val_accuracy"]
    try:
        import pandas  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="pip install pandas"):
            api.trials_frame("smoke", root=finished_study)
    else:
        frame = api.trials_frame("smoke", root=finished_study)
        assert list(frame["trial"]) == [r["trial"] for r in rows]


def test_predict_takes_one_image_or_many_as_arrays_and_files_come(tmp_path, stand_in_model):
    # Any model of digits will do: the forms of one input must reach it as the same digits.
    model = stand_in_model
    x = data.load().x_test[:3]
    expected = api.predict(model, x)
    assert expected.shape == (3, 10)
    for form in (x[..., None], x / 255, np.repeat(x[..., None], 3, axis=-1)):
        np.testing.assert_allclose(api.predict(model, form), expected, atol=1e-4)
    np.testing.assert_allclose(api.predict(model, x[0]), expected[:1], atol=1e-4)  # one image
    assert api.predict(model, []).shape == api.predict(model, x[:0]).shape == (0, 10)
    # A 28x28 drawing dark on light is no MNIST digit as it stands: it is converted, and
    # reaches the model light on dark, as its MNIST twin does.
    drawn = predict.as_digits(255 - x[0])[0][0]
    np.testing.assert_array_equal(drawn, predict.to_mnist(x[0]))
    assert predict.to_mnist(x[0])[0].max() == 0  # a dark ground, as MNIST's
    np.testing.assert_allclose(api.predict(model, 255 - x[0]), api.predict(model, drawn), atol=1e-4)
    # A photo: converted as `digits predict` converts it, in grey or in colour alike.
    photo = 255 - np.asarray(Image.fromarray(x[0]).resize((100, 100)))
    np.testing.assert_allclose(
        api.predict(model, np.repeat(photo[..., None], 3, axis=-1)),
        api.predict(model, photo),
        atol=1e-4,
    )
    # A file, or a list of files; not a string taken apart letter by letter.
    Image.fromarray(photo).save(tmp_path / "seven.png")
    np.testing.assert_allclose(
        api.predict(model, str(tmp_path / "seven.png")), api.predict(model, photo), atol=1e-4
    )
    # Files and arrays of different sizes in one list, each converted as the lone one is.
    mixed = api.predict(model, [tmp_path / "seven.png", x[1], photo])
    np.testing.assert_allclose(mixed[1:], [expected[1], api.predict(model, photo)[0]], atol=1e-4)
    with pytest.raises(ImageError, match=r"images: expected one image \[H, W\] or several"):
        api.predict(model, np.zeros(5))
    with pytest.raises(ImageError, match="image 1: holds 3 images; each item of a list is one"):
        api.predict(model, [photo, x])
