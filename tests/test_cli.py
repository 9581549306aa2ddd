from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from search import data


def test_help_and_spaces_do_not_import_tensorflow(tmp_path):
    code = (
        "import sys; from search.cli import main; main(['spaces']); "
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    for name in ("deep", "seed_v1", "seed_v2", "smoke"):
        assert name in done.stdout
    assert "continuous" in done.stdout  # seed_v1's learning rate is a range


def test_spaces_lists_sizes(run_cli):
    code, out, _ = run_cli("spaces")
    assert code == 0
    smoke = next(line for line in out.splitlines() if " smoke " in line)
    assert " 4 " in smoke


def test_bad_space_is_one_line_and_exit_2(tmp_path, run_cli):
    path = tmp_path / "bad.toml"
    path.write_text("[model]\nblocks = {min = 3, max = 1}\n")
    code, out, err = run_cli("search", "--space", path, "--logs", tmp_path / "logs")
    assert code == 2 and out == ""
    assert err.strip() == f"error: {path}: [model] blocks: min 3 is greater than max 1"
    assert not (tmp_path / "logs").exists()


def test_bad_data_is_one_line_and_exit_2(tmp_path, run_cli):
    path = tmp_path / "data.npz"
    np.savez(path, x_train=np.zeros((10, 28, 28), np.uint8))
    code, _, err = run_cli("search", "--space", "smoke", "--data", path, "--logs", tmp_path)
    assert code == 2 and "missing key(s) y_train, x_test, y_test" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_board_without_studies_says_so(tmp_path, run_cli):
    code, _, err = run_cli("board", "--logs", tmp_path / "none")
    assert code == 2 and "run `digits search` first" in err


@pytest.mark.parametrize(
    ("command", "option", "value", "message"),
    [
        ("retrain", "--subsample", "1.5", "must be a share in (0, 1], got 1.5"),
        ("fidelity", "--sample", "1", "must be at least 2, got 1"),  # no correlation of one
    ],
)
def test_an_option_out_of_range_is_refused_before_any_work(
    tmp_path, run_cli, capfd, command, option, value, message
):
    with pytest.raises(SystemExit) as stopped:
        run_cli(command, "--study", "s", "--logs", tmp_path, option, value)
    assert stopped.value.code == 2
    assert f"{option}: {message}" in capfd.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_help_answers_without_tensorflow_and_names_every_command(tmp_path):
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "search", "--help"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0
    for command in ("search", "fidelity", "results", "retrain", "run", "predict", "board"):
        assert command in done.stdout
    imported = {line.split("|")[-1].strip() for line in done.stderr.splitlines()}
    assert "tensorflow" not in imported and "keras" not in imported


def test_an_output_path_of_the_wrong_kind_is_refused_before_any_work(tmp_path, run_cli, capfd):
    (tmp_path / "taken.png").touch()
    for argv, message in [
        (("results", "--study", "s", "--logs", tmp_path, "--csv", tmp_path), "is a folder; give"),
        (("predict", tmp_path / "taken.png", "--show", tmp_path / "taken.png"), "is a file, not"),
        (("run", "--preset", "smoke", "--logs", tmp_path / "taken.png"), "is a file, not"),
        (("export", "--study", "s", "--models", tmp_path / "taken.png"), "is a file, not"),
    ]:
        with pytest.raises(SystemExit) as stopped:
            run_cli(*argv)
        assert stopped.value.code == 2 and message in capfd.readouterr().err


def test_a_path_that_cannot_be_written_is_one_line_after_the_work(
    tmp_path, run_cli, stand_in_model
):
    Image.fromarray(data.load().x_test[0]).save(tmp_path / "seven.png")
    (tmp_path / "taken").touch()
    seen = tmp_path / "taken" / "seen"  # under a file: no folder can be made there
    code, out, err = run_cli(
        "predict", tmp_path / "seven.png", "--model", stand_in_model, "--show", seen
    )
    assert code == 2 and "seven.png: " in out  # the predictions came first
    assert err.strip().splitlines()[-1] == f"error: {seen}: cannot write there (Not a directory)"
