"""Average the retrained members into one Keras model and evaluate it, once, on the test set.

The ensemble is a plain functional model: the members (uniquely named sub-models) side by
side and a standard `Average` layer over their softmax outputs, so it saves and loads as a
single `.keras` file without this package.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import keras
import numpy as np
from keras import layers

from search.data import IMAGE_SHAPE, Dataset
from search.retrain import finished_members
from search.study import Study, write_atomic

ENSEMBLE_FILE = "ensemble.keras"
EVALUATION_FILE = "evaluation.json"
PREDICT_BATCH = 1000


def ensemble_dir(study: Study) -> Path:
    return study.dir / "ensemble"


def build_ensemble(members: list[keras.Model], name: str = "digits_ensemble") -> keras.Model:
    """One model whose output is the mean of the members' probabilities."""
    names = [m.name for m in members]
    if len(set(names)) != len(names):
        raise ValueError(f"member names must be unique, got {names}")
    inputs = keras.Input(shape=IMAGE_SHAPE, name="image")
    outputs = [m(inputs) for m in members]
    mean = layers.Average(name="mean_probabilities")(outputs) if len(outputs) > 1 else outputs[0]
    return keras.Model(inputs, mean, name=name)


def load_members(study: Study) -> tuple[list[dict[str, Any]], list[keras.Model]]:
    manifests, models = [], []
    for manifest, path in finished_members(study):
        manifests.append(manifest)
        models.append(keras.saving.load_model(path))
    return manifests, models


def accuracy(probs: np.ndarray, labels: np.ndarray) -> tuple[float, int]:
    """(accuracy, error count) of predicted probabilities."""
    errors = int((probs.argmax(axis=1) != labels).sum())
    return 1 - errors / len(labels), errors


def evaluate(study: Study, dataset: Dataset) -> tuple[keras.Model, dict[str, Any], np.ndarray]:
    """Build, save and evaluate the ensemble; returns it, the evaluation and its test probs.

    This is the only place the test set is read, after every choice has been made.
    """
    manifests, members = load_members(study)
    model = build_ensemble(members)
    folder = ensemble_dir(study)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{ENSEMBLE_FILE}.tmp.keras"
    model.save(tmp)
    os.replace(tmp, folder / ENSEMBLE_FILE)

    x, y = dataset.x_test, dataset.y_test
    rows = []
    for manifest, member in zip(manifests, members, strict=True):
        acc, errors = accuracy(member.predict(x, batch_size=PREDICT_BATCH, verbose=0), y)
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
    probs = model.predict(x, batch_size=PREDICT_BATCH, verbose=0)
    acc, errors = accuracy(probs, y)
    best_member = max(r["test_accuracy"] for r in rows)
    evaluation = {
        "members": rows,
        "ensemble": {"test_accuracy": acc, "test_errors": errors, "size": len(members)},
        "gain_over_best_member": acc - best_member,
        "gain_over_mean_member": acc - float(np.mean([r["test_accuracy"] for r in rows])),
        "test_images": len(y),
        "data_sha256": dataset.sha256,
    }
    write_atomic(folder / EVALUATION_FILE, json.dumps(evaluation, indent=2) + "\n")
    return model, evaluation, probs
