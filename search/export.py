"""Export a study's ensemble to `best_models/<name>/` in the formats people deploy.

    model.keras      Keras 3 file: `keras.saving.load_model`
    saved_model/     TensorFlow SavedModel: `tf.saved_model.load`; signature `serve` takes uint8
                     images [N, 28, 28], `serve_nhwc` takes [N, 28, 28, 1]; both return
                     probabilities [N, 10]
    model.tflite     TFLite flatbuffer (uint8 [N, 28, 28] in, probabilities out)
    metadata.json    study, members, validation and test accuracy, data checksum, versions, command
    README.md        a short model card
    report/          confusion matrix, misclassified digits, most confused pairs

Everything is written to a temporary folder first and renamed into place, so a failed export
never leaves a half-written model where a good one was.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf

from search.data import IMAGE_SHAPE
from search.ensemble import ENSEMBLE_FILE, EVALUATION_FILE, ensemble_dir
from search.options import EXPORT_FORMATS
from search.retrain import finished_members
from search.study import Study, StudyError, read_json, versions, write_atomic

MEMBER_FIELDS = ("name", "trial_id", "seed", "epochs", "val_accuracy", "hold_out", "config")
DEFAULT_ROOT = Path("best_models")


def write_savedmodel(model: keras.Model, path: Path) -> None:
    """A SavedModel whose signatures take images as they come: uint8, with or without channel."""
    archive = keras.export.ExportArchive()
    archive.track(model)

    def serve(images: tf.Tensor) -> tf.Tensor:
        return model(tf.cast(images, tf.float32), training=False)

    archive.add_endpoint(
        "serve", serve, input_signature=[tf.TensorSpec([None, *IMAGE_SHAPE], tf.uint8, "images")]
    )
    archive.add_endpoint(
        "serve_nhwc",
        lambda images: serve(images[..., 0]),
        input_signature=[tf.TensorSpec([None, *IMAGE_SHAPE, 1], tf.uint8, "images")],
    )
    archive.write_out(str(path), verbose=False)


def write_tflite(saved_model: Path, path: Path) -> None:
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model), signature_keys=["serve"])
    path.write_bytes(converter.convert())


def model_card(name: str, meta: dict[str, Any]) -> str:
    ens = meta["evaluation"]["ensemble"]
    held_out = meta["members"][0].get("hold_out")
    data = (
        f"{meta['train_images']:,} training images (its validation split held out)"
        if held_out
        else f"all {meta['train_images']:,} training images"
    )
    views = ""
    if ens.get("tta"):
        # An evaluation that records no degrees averaged the image's one-pixel shifts.
        turns = ens.get("tta_degrees")
        seen = f"the image turned {turns:g} degrees each way" if turns else "its one-pixel shifts"
        views = f" over the image and {seen} (test-time augmentation)"
    rows = "\n".join(
        f"| {m['member']} | trial {m['trial_id']}, seed {m['seed']}, {m['epochs']} epochs | "
        f"{m['val_accuracy_in_search']:.4f} | {m['test_accuracy']:.4f} |"
        for m in meta["evaluation"]["members"]
    )
    return f"""# {name}

An ensemble of {ens["size"]} CNN(s) for 28x28 handwritten digits, averaging their softmax
outputs{views}; found by `digits search` (study `{meta["study"]}`),
retrained on {data} and evaluated once on the
{meta["test_images"]:,}-image test set after every choice was made on a validation split.

**Test accuracy: {ens["test_accuracy"]:.4%}** ({ens["test_errors"]} errors).

| member | configuration | val accuracy (search) | test accuracy |
|---|---|---|---|
{rows}

Input: raw uint8 pixels, white digit on black as in MNIST, [N, 28, 28] (SavedModel `serve`;
`serve_nhwc` takes [N, 28, 28, 1]). Output: probabilities [N, 10]. For photos or scans,
`digits predict` converts images the MNIST way first.

Files: `model.keras` (`keras.saving.load_model`), `saved_model/` (`tf.saved_model.load`),
`model.tflite` (TFLite interpreter), `metadata.json`, `report/` (error analysis).
Data: MNIST (LeCun, Cortes, Burges; CC BY-SA 3.0), sha256 `{meta["data_sha256"][:12]}…`.
"""


def export(
    study: Study, name: str, formats: tuple[str, ...], command: str, root: Path = DEFAULT_ROOT
) -> Path:
    """Write `root/name/` atomically from the study's ensemble; return its path."""
    unknown = set(formats) - set(EXPORT_FORMATS)
    if unknown:
        raise StudyError(
            f"unknown export format(s) {', '.join(sorted(unknown))}; "
            f"choose from {', '.join(EXPORT_FORMATS)}"
        )
    source = ensemble_dir(study)
    if not (source / ENSEMBLE_FILE).exists():
        raise StudyError(f"study '{study.name}' has no ensemble yet; run `digits ensemble`")
    evaluation = read_json(source / EVALUATION_FILE)
    record = study.read()
    model = keras.saving.load_model(source / ENSEMBLE_FILE)
    manifests = [m for m, _ in finished_members(study)]
    meta = {
        "name": name,
        "study": study.name,
        "space": {**record["space"], "toml": record["space_toml"]},
        "members": [{k: m.get(k) for k in MEMBER_FIELDS} for m in manifests],
        "evaluation": evaluation,
        "train_images": manifests[0]["train_images"],
        "test_images": evaluation["test_images"],
        "data_sha256": evaluation["data_sha256"],
        "versions": versions(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": command,
        "formats": list(formats),
    }
    root.mkdir(parents=True, exist_ok=True)
    final = root / name
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{name}.partial-"))
    try:
        if "keras" in formats:
            shutil.copy2(source / ENSEMBLE_FILE, tmp / "model.keras")
        if "savedmodel" in formats or "tflite" in formats:
            write_savedmodel(model, tmp / "saved_model")
        if "tflite" in formats:
            write_tflite(tmp / "saved_model", tmp / "model.tflite")
            if "savedmodel" not in formats:
                shutil.rmtree(tmp / "saved_model")
        if (source / "report").is_dir():
            shutil.copytree(source / "report", tmp / "report")
        write_atomic(tmp / "metadata.json", json.dumps(meta, indent=2) + "\n")
        write_atomic(tmp / "README.md", model_card(name, meta))
        tmp.chmod(0o755)  # mkdtemp makes it private
        _swap_in(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def _swap_in(new: Path, final: Path) -> None:
    """Replace `final` by `new`: two renames, the old folder deleted only once `new` is in."""
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        os.replace(final, old)
    os.replace(new, final)
    if old is not None:
        with contextlib.suppress(OSError):
            shutil.rmtree(old)
