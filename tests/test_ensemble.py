"""Test-time augmentation, and members retrained with the validation split held out."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
from conftest import copy_of, exported_probs, smoke_run
from scipy import ndimage

from search import data, space
from search.cli import main
from search.ensemble import TTA_DEGREES, build_ensemble, in_float32
from search.hypermodel import compile_model
from search.model import build_model

pytestmark = pytest.mark.slow  # trains models or starts processes: seconds each


def test_tta_averages_the_members_over_the_image_turned_each_way(capsys):
    keras.utils.set_random_seed(0)
    member = keras.Sequential(
        [keras.Input((28, 28)), keras.layers.Flatten(), keras.layers.Dense(10, "softmax")],
        name="m0",
    )
    x = np.random.default_rng(0).integers(0, 256, (8, 28, 28)).astype("float32")
    # The reference: scipy turning the images themselves, not the matrix's basis images.
    views = [
        x,
        *(
            ndimage.rotate(x, d, axes=(2, 1), reshape=False, order=1)
            for d in (-TTA_DEGREES, TTA_DEGREES)
        ),
    ]
    expected = np.mean([member.predict(v, verbose=0) for v in views], axis=0)
    np.testing.assert_allclose(
        build_ensemble([member], tta=True).predict(x, verbose=0), expected, atol=1e-5
    )
    # The command line's help, which does not load Keras, says the same.
    with pytest.raises(SystemExit):
        main(["ensemble", "--help"])
    assert f"turned {TTA_DEGREES:g} degrees" in " ".join(capsys.readouterr().out.split())


def test_bfloat16_member_trains_in_bfloat16_and_is_served_in_float32():
    s = space.load("smoke")
    config = {p.name: p.choice[0] if p.choice else p.fixed for p in s.params.values()}
    config["precision"] = "mixed_bfloat16"
    keras.utils.set_random_seed(0)
    member = build_model(config, name="m_bf16")
    assert member.get_layer("b1_conv1").compute_dtype == "bfloat16"
    assert member.get_layer("b1_conv1").variable_dtype == "float32"
    compile_model(member, config, steps=8, epochs=1)
    d = data.load()
    y = keras.utils.to_categorical(d.y_train[:512], 10)
    member.fit(d.x_train[:512], y, batch_size=64, epochs=1, verbose=0)

    twin = in_float32(member, config)
    assert twin.name == "m_bf16"
    assert {layer.compute_dtype for layer in twin.layers} == {"float32"}
    x = d.x_test[:64]
    probs = member.predict(x, verbose=0)
    assert probs.dtype == np.float32
    # The same weights: bfloat16 (8 bits of mantissa) only rounds the arithmetic.
    np.testing.assert_allclose(twin.predict(x, verbose=0), probs, atol=0.05)


@pytest.fixture(scope="module")
def held_out(tmp_path_factory, mnist_subset):
    """`digits run --preset smoke --hold-out --tta` on 3,000 training and 500 test images."""
    root = tmp_path_factory.mktemp("held_out")
    assert main([*smoke_run(mnist_subset, root), "--hold-out", "--tta"]) == 0
    study = root / "logs" / "smoke"
    return {
        "root": root,
        "logs": root / "logs",
        "study": study,
        "model": root / "models" / "smoke",
        "evaluation": json.loads((study / "ensemble" / "evaluation.json").read_text()),
    }


def test_hold_out_members_skip_the_validation_split_and_are_measured_on_it(held_out, mnist_subset):
    manifests = [
        json.loads(p.read_text()) for p in sorted((held_out["study"] / "retrain").glob("*/*.json"))
    ]
    assert len(manifests) == 2
    assert all(m["hold_out"] and m["name"].endswith("_ho") for m in manifests)
    assert all(m["train_images"] == 3000 - 200 for m in manifests)  # smoke: 200 validation

    validation = held_out["evaluation"]["validation"]
    assert validation["images"] == 200 and len(validation["by_size"]) == 2
    # The numbers are the members' own, on the study's validation split.
    split = data.split(data.load(mnist_subset), 200, seed=0)
    best = max(manifests, key=lambda m: m["val_accuracy"])
    member = keras.saving.load_model(held_out["study"] / "retrain" / best["name"] / "member.keras")
    own = float((member.predict(split.x_val, verbose=0).argmax(1) == split.y_val).mean())
    assert validation["by_size"][0]["members"] == [best["name"]]
    assert validation["by_size"][0]["accuracy"] == pytest.approx(own)
    assert validation["members"][best["name"]]["accuracy"] == pytest.approx(own)
    assert held_out["evaluation"]["ensemble"]["tta"] is True


def test_tta_ensemble_exports_to_tflite_and_agrees(held_out, tmp_path):
    x = data.load().x_test[:16]
    expected = keras.saving.load_model(held_out["model"] / "model.keras").predict(x, verbose=0)
    np.testing.assert_allclose(
        exported_probs(held_out["model"], "tflite", x, tmp_path), expected, atol=1e-5
    )
    meta = json.loads((held_out["model"] / "metadata.json").read_text())
    assert all(m["hold_out"] for m in meta["members"])
    assert "validation split held out" in (held_out["model"] / "README.md").read_text()


def test_members_with_and_without_hold_out_are_not_mixed(held_out, run_cli, tmp_path):
    logs = copy_of(held_out["logs"], tmp_path)
    assert run_cli("retrain", "--study", "smoke", "--logs", logs, "--top", "1")[0] == 0
    code, _, err = run_cli("ensemble", "--study", "smoke", "--logs", logs)
    assert code == 2 and "with and without --hold-out" in err and len(err.splitlines()) == 1
