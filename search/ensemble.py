"""Average the retrained members into one Keras model and evaluate it, once, on the test set.

The ensemble is a plain functional model: the members (uniquely named sub-models) side by
side and a standard `Average` layer over their softmax outputs, so it saves and loads as a
single `.keras` file without this package. With test-time augmentation (`tta`) every member
also sees the image turned `TTA_DEGREES` each way, made with a standard frozen `Dense` layer
(a turn is a linear map of the pixels), so the exported SavedModel and TFLite files do it too.

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
from scipy import ndimage

from search.data import IMAGE_SHAPE, Dataset
from search.model import rebuild
from search.retrain import finished_members, validation_split
from search.study import Study, StudyError, atomic_path, write_atomic

ENSEMBLE_FILE = "ensemble.keras"
EVALUATION_FILE = "evaluation.json"
PREDICT_BATCH = 1000
# Test-time views: the image, and the image turned this many degrees each way. On the
# validation split, held-out members of five quick-family studies erred 3.1 images fewer
# each (of 33; none more) with turns of 5 degrees, as with 7 or 9, where the image and its
# one-pixel shifts erred 1.1 fewer (BENCHMARKS.md, test-time views). The quick space trains
# with turns of up to 10 degrees and the full one up to 5: these views stay in distribution.
TTA_DEGREES = 5.0


def ensemble_dir(study: Study) -> Path:
    return study.dir / "ensemble"


def turn_matrix(degrees: float) -> np.ndarray:
    """The [784, 784] matrix that turns a flattened 28x28 image by `degrees` about its centre
    (bilinear, black where nothing turns in). A turn is linear in the pixels: row k is the
    image of pixel k alone, turned."""
    n = IMAGE_SHAPE[0] * IMAGE_SHAPE[1]
    basis = np.eye(n, dtype=np.float32).reshape(n, *IMAGE_SHAPE)
    return ndimage.rotate(basis, degrees, axes=(2, 1), reshape=False, order=1).reshape(n, n)


def turned_views(images: Any) -> list[Any]:
    """A batch of [28, 28] images, and the same turned `TTA_DEGREES` each way."""
    flat = layers.Flatten(name="tta_flat")(images)
    views = [images]
    for degrees in (-TTA_DEGREES, TTA_DEGREES):
        name = f"tta_turn_{'m' if degrees < 0 else ''}{abs(degrees):g}"  # tta_turn_m5
        # float32 whatever the global policy: the members are served in float32 too.
        turn = layers.Dense(
            flat.shape[-1], use_bias=False, trainable=False, dtype="float32", name=name
        )
        turned = turn(flat)
        turn.set_weights([turn_matrix(degrees)])
        views.append(layers.Reshape(IMAGE_SHAPE)(turned))
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
    views = turned_views(inputs) if tta else [inputs]
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
    turned = [predict(build_ensemble([m], tta=True, name=f"{m.name}_tta"), x) for m in members]
    order = sorted(range(len(members)), key=lambda i: -manifests[i]["val_accuracy"])
    by_size = []
    for k in range(1, len(order) + 1):
        best = order[:k]
        by_size.append(
            {
                "members": [members[i].name for i in best],
                "accuracy": accuracy(np.mean([plain[i] for i in best], axis=0), y)[0],
                "tta_accuracy": accuracy(np.mean([turned[i] for i in best], axis=0), y)[0],
            }
        )
    return {
        "images": len(y),
        "members": {
            m.name: {"accuracy": accuracy(p, y)[0], "tta_accuracy": accuracy(q, y)[0]}
            for m, p, q in zip(members, plain, turned, strict=True)
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
            **({"tta_degrees": TTA_DEGREES} if tta else {}),
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
