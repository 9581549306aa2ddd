"""Average the retrained members into one Keras model and evaluate it, once, on the test set.

The ensemble is a plain functional model: the members (uniquely named sub-models) side by
side and a standard `Average` layer over their softmax outputs, so it saves and loads as a
single `.keras` file without this package. With test-time augmentation (`tta`) every member
also sees the image shifted by one pixel each way, made with standard padding and cropping
layers, so the exported SavedModel and TFLite files do it too.

Members retrained with a hold-out (`digits retrain --hold-out`) are also measured on the
study's validation split: each member, the best k by search score for every k, with and
without test-time augmentation. That is where ensemble size and augmentation get chosen.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import keras
import numpy as np
from keras import layers

from search.data import IMAGE_SHAPE, Dataset
from search.model import rebuild
from search.retrain import finished_members, validation_split
from search.study import Study, StudyError, atomic_path, write_atomic

ENSEMBLE_FILE = "ensemble.keras"
EVALUATION_FILE = "evaluation.json"
PREDICT_BATCH = 1000
# Test-time views as (down, right) pixel shifts: the image itself and one pixel each way.
# Training augments with shifts of up to ~3 pixels, so these views stay in distribution.
TTA_SHIFTS = ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1))


def ensemble_dir(study: Study) -> Path:
    return study.dir / "ensemble"


def shifted_views(images: Any) -> list[Any]:
    """The TTA_SHIFTS views of a batch of [28, 28] images, black (zero) where shifted in."""
    h, w = IMAGE_SHAPE
    padded = layers.ZeroPadding2D(1, name="tta_pad")(layers.Reshape((h, w, 1))(images))
    views = []
    for down, right in TTA_SHIFTS:
        crop = ((1 - down, 1 + down), (1 - right, 1 + right))
        view = layers.Cropping2D(crop, name=f"tta_view_{down}_{right}".replace("-", "m"))(padded)
        views.append(layers.Reshape(IMAGE_SHAPE)(view))
    return views


def build_ensemble(
    members: list[keras.Model], tta: bool = False, name: str = "digits_ensemble"
) -> keras.Model:
    """One model whose output is the mean of the members' probabilities (over every view of
    the image with `tta`)."""
    names = [m.name for m in members]
    if len(set(names)) != len(names):
        raise ValueError(f"member names must be unique, got {names}")
    inputs = keras.Input(shape=IMAGE_SHAPE, name="image")
    views = shifted_views(inputs) if tta else [inputs]
    outputs = [m(view) for m in members for view in views]
    mean = layers.Average(name="mean_probabilities")(outputs) if len(outputs) > 1 else outputs[0]
    return keras.Model(inputs, mean, name=name)


def in_float32(member: keras.Model, config: dict[str, Any]) -> keras.Model:
    """The member rebuilt in float32 with its own weights (kept in float32 by mixed precision):
    TFLite and most deployments want float32 ops, and inference costs little either way."""
    return rebuild(member, {**config, "precision": "float32"})


def load_member(manifest: dict[str, Any], path: Path) -> keras.Model:
    """One retrained member, served in float32 whatever precision it trained in."""
    try:
        member = keras.saving.load_model(path)
    except (ValueError, OSError, zipfile.BadZipFile) as e:
        # Keras calls a damaged file "not found"; say what it is and how to mend it.
        raise StudyError(
            f"{path}: not a readable .keras file ({type(e).__name__}); delete "
            f"{path.parent} and run the command that trained it again"
        ) from None
    if manifest["config"].get("precision", "float32") != "float32":
        member = in_float32(member, manifest["config"])
    return member


def load_members(study: Study) -> tuple[list[dict[str, Any]], list[keras.Model]]:
    found = finished_members(study)
    return [m for m, _ in found], [load_member(m, path) for m, path in found]


def accuracy(probs: np.ndarray, labels: np.ndarray) -> tuple[float, int]:
    """(accuracy, error count) of predicted probabilities."""
    errors = int((probs.argmax(axis=1) != labels).sum())
    return 1 - errors / len(labels), errors


def predict(model: keras.Model, x: np.ndarray) -> np.ndarray:
    return model.predict(x, batch_size=PREDICT_BATCH, verbose=0)


def validation_report(
    study: Study, dataset: Dataset, manifests: list[dict[str, Any]], members: list[keras.Model]
) -> dict[str, Any]:
    """Accuracy on the study's validation split of members retrained without it: each member,
    and the best k members (by search score) for every k, with and without TTA."""
    split = validation_split(study, dataset)
    x, y = split.x_val, split.y_val
    plain = [predict(m, x) for m in members]
    shifted = [predict(build_ensemble([m], tta=True, name=f"{m.name}_tta"), x) for m in members]
    order = sorted(range(len(members)), key=lambda i: -manifests[i]["val_accuracy"])
    by_size = []
    for k in range(1, len(order) + 1):
        best = order[:k]
        by_size.append(
            {
                "members": [members[i].name for i in best],
                "accuracy": accuracy(np.mean([plain[i] for i in best], axis=0), y)[0],
                "tta_accuracy": accuracy(np.mean([shifted[i] for i in best], axis=0), y)[0],
            }
        )
    return {
        "images": len(y),
        "members": {
            m.name: {"accuracy": accuracy(p, y)[0], "tta_accuracy": accuracy(q, y)[0]}
            for m, p, q in zip(members, plain, shifted, strict=True)
        },
        "by_size": by_size,
    }


def evaluate(
    study: Study, dataset: Dataset, tta: bool = False
) -> tuple[keras.Model, dict[str, Any], np.ndarray]:
    """Build, save and evaluate the ensemble; returns it, the evaluation and its test probs.

    This is the only place the test set is read, after every choice has been made.
    """
    manifests, members = load_members(study)
    model = build_ensemble(members, tta)
    folder = ensemble_dir(study)
    with atomic_path(folder / ENSEMBLE_FILE) as tmp:
        model.save(tmp)
    held_out = manifests[0].get("hold_out", False)
    validation = validation_report(study, dataset, manifests, members) if held_out else None

    x, y = dataset.x_test, dataset.y_test
    rows = []
    for manifest, member in zip(manifests, members, strict=True):
        acc, errors = accuracy(predict(member, x), y)
        rows.append(
            {
                "member": member.name,
                "trial_id": manifest["trial_id"],
                "seed": manifest["seed"],
                "epochs": manifest["epochs"],
                "val_accuracy_in_search": manifest["val_accuracy"],
                "test_accuracy": acc,
                "test_errors": errors,
            }
        )
    probs = predict(model, x)
    acc, errors = accuracy(probs, y)
    best_member = max(r["test_accuracy"] for r in rows)
    evaluation = {
        "members": rows,
        "ensemble": {
            "test_accuracy": acc,
            "test_errors": errors,
            "size": len(members),
            "tta": tta,
        },
        "gain_over_best_member": acc - best_member,
        "gain_over_mean_member": acc - float(np.mean([r["test_accuracy"] for r in rows])),
        "test_images": len(y),
        "data_sha256": dataset.sha256,
    }
    if validation:
        evaluation["validation"] = validation
    write_atomic(folder / EVALUATION_FILE, json.dumps(evaluation, indent=2) + "\n")
    return model, evaluation, probs
