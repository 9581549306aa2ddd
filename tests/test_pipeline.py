"""The second half of the pipeline on a tiny MNIST subset: run, retrain, ensemble, export."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import keras
import numpy as np
import pytest
from conftest import LOADERS, exported_probs, smoke_run

from search import api, data, space
from search.cli import main
from search.predict import read_image, to_mnist

pytestmark = pytest.mark.slow  # trains models or starts processes: seconds each


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory, mnist_subset):
    """`digits run --preset smoke` on 3,000 training and 500 test images of MNIST, with a
    time budget (ample: the preset's one epoch per member)."""
    root = tmp_path_factory.mktemp("pipeline")
    d = data.load()
    argv = [*smoke_run(mnist_subset, root), "--time-budget", "1h"]
    assert main(argv) == 0
    return {
        "root": root,
        "argv": argv,
        "logs": root / "logs",
        "study": root / "logs" / "smoke",
        "model": root / "models" / "smoke",
        "x": d.x_test[:500],
        "y": d.y_test[:500],
    }


def test_run_writes_members_ensemble_report_and_export(pipeline, mnist_subset):
    members = sorted((pipeline["study"] / "retrain").glob("*/manifest.json"))
    assert len(members) == 2
    manifest = json.loads(members[0].read_text())
    assert manifest["train_images"] == 3000 and manifest["epochs"] == 1
    budget = json.loads((pipeline["study"] / "retrain" / "budget.json").read_text())
    assert set(budget["epochs"].values()) == {1} and 3000 < budget["seconds"] < 3600
    assert {"loss", "accuracy"} <= set(manifest["final_metrics"])
    evaluation = json.loads((pipeline["study"] / "ensemble" / "evaluation.json").read_text())
    assert evaluation["test_images"] == 500 and len(evaluation["members"]) == 2
    assert evaluation["ensemble"]["tta"] is False  # the smoke preset's default
    for name in ("confusion_matrix.png", "misclassified.png", "confused_pairs.md", "errors.json"):
        assert (pipeline["model"] / "report" / name).is_file()
    meta = json.loads((pipeline["model"] / "metadata.json").read_text())
    assert meta["evaluation"]["ensemble"]["test_accuracy"] > 0.5
    assert meta["data_sha256"] == data.sha256_of([mnist_subset])
    # The space by name, checksum and content; nothing of the machine that trained it.
    toml = space.resolve("smoke").read_text()
    assert meta["space"]["name"] == "smoke" and meta["space"]["toml"] == toml
    assert meta["space"]["sha256"] == hashlib.sha256(toml.encode()).hexdigest()
    assert str(pipeline["root"]) not in json.dumps(meta["space"]) and "path" not in meta["space"]
    assert {"tensorflow", "keras"} <= set(meta["versions"]) and meta["command"].startswith("digits")
    assert (pipeline["model"] / "README.md").read_text().startswith("# smoke")
    assert list((pipeline["study"] / "ensemble" / "tensorboard").iterdir())  # report images


def test_ensemble_output_is_the_mean_of_its_members(pipeline):
    ensemble = keras.saving.load_model(pipeline["model"] / "model.keras")
    members = [
        keras.saving.load_model(p)
        for p in sorted((pipeline["study"] / "retrain").glob("*/member.keras"))
    ]
    x = pipeline["x"][:64]
    mean = np.mean([m.predict(x, verbose=0) for m in members], axis=0)
    np.testing.assert_allclose(ensemble.predict(x, verbose=0), mean, atol=1e-6)


@pytest.mark.parametrize("fmt", sorted(LOADERS))
def test_each_export_loads_without_the_project_and_agrees(pipeline, fmt, tmp_path):
    x = pipeline["x"][:32]
    expected = keras.saving.load_model(pipeline["study"] / "ensemble" / "ensemble.keras").predict(
        x, verbose=0
    )
    np.testing.assert_allclose(
        exported_probs(pipeline["model"], fmt, x, tmp_path), expected, atol=1e-5
    )


def test_rerun_keeps_finished_members_and_retrains_a_missing_one(pipeline):
    retrain = pipeline["study"] / "retrain"
    first, second = sorted(p.parent for p in retrain.glob("*/manifest.json"))
    kept = (first / "member.keras").stat().st_mtime_ns
    (second / "manifest.json").unlink()
    clock = pipeline["study"] / "run_time.json"
    before = json.loads(clock.read_text())["parts"]
    assert main(pipeline["argv"]) == 0
    assert (first / "member.keras").stat().st_mtime_ns == kept
    assert (second / "manifest.json").is_file()
    # The rerun is one more part of the same run: its time counts against the budget.
    after = json.loads(clock.read_text())["parts"]
    assert after[:-1] == before and len(after) == len(before) + 1 and after[-1] > 0


def test_failed_export_leaves_the_previous_one_intact(pipeline, monkeypatch, run_cli):
    from search import export

    before = (pipeline["model"] / "metadata.json").read_text()

    def broken(*args):
        raise OSError("disk full")

    monkeypatch.setattr(export, "write_tflite", broken)
    with pytest.raises(OSError, match="disk full"):
        main(
            [
                "export",
                "--study",
                "smoke",
                "--logs",
                str(pipeline["logs"]),
                "--models",
                str(pipeline["root"] / "models"),
            ]
        )
    assert (pipeline["model"] / "metadata.json").read_text() == before
    assert [p.name for p in (pipeline["root"] / "models").iterdir()] == ["smoke"]
    code, _, err = run_cli(
        "export",
        "--study",
        "smoke",
        "--format",
        "onnx",
        "--logs",
        pipeline["logs"],
        "--models",
        pipeline["root"] / "models",
    )
    assert code == 2 and "unknown export format(s) onnx" in err


def surest(pipeline: dict, n: int) -> list[int]:
    """Indices into `pipeline["x"]` of the `n` test digits the export reads right most
    surely: pictures of them should read the same."""
    model = keras.saving.load_model(pipeline["model"] / "model.keras")
    x, y = pipeline["x"], pipeline["y"]
    probs = model.predict(x, verbose=0)
    return [i for i in np.argsort(-probs.max(axis=1)) if probs[i].argmax() == y[i]][:n]


def test_predict_classifies_real_image_files(pipeline, tmp_path, run_cli):
    from PIL import Image

    x, y = pipeline["x"], pipeline["y"]
    sure = surest(pipeline, 6)
    files = []
    for n, i in enumerate(sure):
        big = Image.fromarray(x[i]).resize((90 + 7 * n, 110), Image.Resampling.BILINEAR)
        if n % 2:  # dark ink on a light, coloured page, as a photo or scan has it
            page = Image.eval(big, lambda v: 255 - v).convert("RGB")
            tint = [
                c.point(lambda v, k=k: min(255, v + 10 * k)) for k, c in enumerate(page.split())
            ]
            page = Image.merge("RGB", tint)
            path = tmp_path / f"digit{n}.jpg"
            page.save(path, quality=95)
        else:
            path = tmp_path / f"digit{n}.png"
            big.save(path)
        files.append(path)
    np.save(tmp_path / "array.npy", x[sure[0]])
    files.append(tmp_path / "array.npy")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
    Image.new("L", (40, 40), 255).save(tmp_path / "blank.png")
    files += [tmp_path / "broken.png", tmp_path / "blank.png"]

    seen = tmp_path / "seen"
    code, out, err = run_cli(
        "predict", *files, "--model", pipeline["model"], "--json", "--show", seen
    )
    assert code == 2  # two files could not be read; the others are still classified
    rows = json.loads(out)
    results = {Path(r["file"]).name: r for r in rows if "digit" in r}
    # An unreadable file's record names it, as every other record does.
    errors = {Path(r["file"]).name: r["error"] for r in rows if "error" in r}
    assert set(errors) == {"broken.png", "blank.png"}
    assert errors["blank.png"] == "empty image (no digit found)"
    expected = [y[i] for i in sure] + [y[sure[0]]]
    names = [f.name for f in files[:-2]]
    right = sum(
        results[name]["digit"] == label for name, label in zip(names, expected, strict=True)
    )
    assert right >= len(names) - 1
    assert all(len(r["top3"]) == 3 for r in results.values())
    assert not any("warning" in r for r in results.values())  # one digit each
    assert "broken.png: not an image" in err and "blank.png: empty image" in err
    # --show: the 28x28 image the model saw, for each file it classified.
    for f in files[:-2]:
        shown = np.asarray(Image.open(seen / f"{f.stem}.png"))
        assert shown.shape == (28, 28)
        np.testing.assert_array_equal(shown, to_mnist(read_image(f), str(f)))

    code, out, _ = run_cli("predict", files[0], "--model", pipeline["model"])
    assert code == 0 and out.startswith(f"{files[0]}: ")
    # A folder: every image file in it, in name order.
    folder = tmp_path / "photos"
    folder.mkdir()
    for f in files[1::-1]:
        (folder / f.name).write_bytes(f.read_bytes())
    (folder / "notes.txt").write_text("not an image")
    code, out, _ = run_cli("predict", folder, "--model", pipeline["model"])
    assert code == 0
    assert [line.split(": ")[0] for line in out.splitlines()] == [
        str(folder / f.name) for f in sorted(files[:2])
    ]
    # Two digits in one file are read as one, and the reader is told.
    pair = tmp_path / "pair.png"
    row = np.concatenate([x[sure[0]], x[sure[1]]], axis=1)
    Image.fromarray(row).resize((180, 90), Image.Resampling.BILINEAR).save(pair)
    code, out, err = run_cli("predict", pair, "--model", pipeline["model"])
    assert code == 0 and out.startswith(f"{pair}: ")
    assert f"warning: {pair}: the image seems to hold 2 digits side by side" in err
    code, out, _ = run_cli("predict", pair, "--model", pipeline["model"], "--json")
    assert "2 digits side by side" in json.loads(out)[0]["warning"]
    with pytest.warns(UserWarning, match=f"{pair}: the image seems to hold 2 digits"):
        api.predict(pipeline["model"], [pair])


def test_a_number_is_read_digit_by_digit(pipeline, tmp_path, run_cli):
    from PIL import Image

    x, y = pipeline["x"], pipeline["y"]
    sure = surest(pipeline, 3)
    dash = np.zeros((28, 14), np.uint8)
    dash[13:16, 4:10] = 255  # "12-7": the dash is no digit
    row = np.concatenate([x[sure[0]], x[sure[1]], dash, x[sure[2]]], axis=1)
    number = tmp_path / "number.jpg"
    Image.fromarray(255 - row).resize((4 * 98, 4 * 28)).save(number, quality=90)  # dark ink
    seen = tmp_path / "seen"
    code, out, err = run_cli(
        "predict", number, "--number", "--model", pipeline["model"], "--json", "--show", seen
    )
    assert code == 0 and not err
    (read,) = json.loads(out)
    assert read["number"] == "".join(str(y[i]) for i in sure)
    assert [d["digit"] for d in read["digits"]] == [int(y[i]) for i in sure]
    each = [d["probability"] for d in read["digits"]]
    assert read["probability"] == pytest.approx(np.prod(each), abs=1e-5)
    assert np.asarray(Image.open(seen / "number.png")).shape == (28, 3 * 28)
    code, out, _ = run_cli("predict", number, "--number", "--model", pipeline["model"])
    assert code == 0 and out.startswith(f"{number}: {read['number']} (")
    # The Python API reads the file the same way, and the picture given as an array.
    (same,) = api.read_numbers(pipeline["model"], [number])
    assert same.text == read["number"]
    assert same.probability == pytest.approx(read["probability"], abs=1e-5)
    assert [n.text for n in api.read_numbers(pipeline["model"], 255 - row)] == [read["number"]]


def test_a_missing_member_model_is_named(pipeline, run_cli):
    member = sorted((pipeline["study"] / "retrain").glob("*/member.keras"))[0]
    aside = member.with_name("aside.keras")
    member.rename(aside)
    try:
        code, _, err = run_cli("ensemble", "--study", "smoke", "--logs", pipeline["logs"])
    finally:
        aside.rename(member)
    assert code == 2 and f"{member}: missing" in err
