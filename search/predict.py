"""Classify people's own digit images with an exported model.

Images are converted the way MNIST was made: grayscale, inverted when the background is light
(MNIST digits are light on dark), cropped to the digit, fitted into a 20x20 box keeping the
aspect ratio, and centred by centre of mass in a 28x28 frame. `.npy` arrays go through the same
steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from search.data import IMAGE_SHAPE

BOX = 20  # MNIST fits each digit into 20x20, then centres it in 28x28
INK = 0.2  # a pixel with more than this share of the darkest-to-lightest range is ink


class ImageError(Exception):
    """A file that cannot be read as a digit image; the message names the file."""


@dataclass(frozen=True)
class Prediction:
    file: str
    digit: int
    probability: float
    top3: list[tuple[int, float]]

    def as_dict(self) -> dict[str, Any]:
        """The prediction as `digits predict --json` prints it."""
        return {
            "file": self.file,
            "digit": self.digit,
            "probability": round(self.probability, 6),
            "top3": [{"digit": d, "probability": round(q, 6)} for d, q in self.top3],
        }


def read_image(path: Path) -> np.ndarray:
    """A grayscale float array 0..255 of any PNG/JPEG (colour, alpha, grey) or `.npy`."""
    if not path.is_file():
        raise ImageError(f"{path}: no such file")
    if path.suffix.lower() == ".npy":
        try:
            array = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as e:
            raise ImageError(f"{path}: not a readable .npy array ({e})") from None
        if array.ndim == 3 and array.shape[-1] in (1, 3, 4):
            array = array[..., :3].mean(axis=-1)
        if array.ndim != 2 or not np.issubdtype(array.dtype, np.number):
            raise ImageError(f"{path}: expected a 2-D numeric array, got shape {array.shape}")
        array = array.astype(np.float64)
        if array.max() <= 1.0:  # a float image in 0..1
            array = array * 255
        return array
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("RGBA", "LA") or "transparency" in im.info:
                # Transparent pixels are background: lay the image on white first.
                rgba = im.convert("RGBA")
                canvas = Image.new("RGBA", rgba.size, "white")
                im = Image.alpha_composite(canvas, rgba)
            return np.asarray(im.convert("L"), dtype=np.float64)
    except (UnidentifiedImageError, OSError) as e:
        raise ImageError(f"{path}: not an image ({type(e).__name__})") from None


def to_mnist(gray: np.ndarray, name: str = "image") -> np.ndarray:
    """Convert a grayscale array to an MNIST-style uint8 28x28 digit."""
    if gray.size == 0 or gray.max() - gray.min() < 1:
        raise ImageError(f"{name}: empty image (no digit found)")
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    if np.median(border) > (gray.min() + gray.max()) / 2:
        gray = gray.max() - gray  # dark on light -> light on dark, like MNIST
    else:
        gray = gray - gray.min()
    gray = gray / gray.max()
    rows = np.flatnonzero((gray > INK).any(axis=1))
    cols = np.flatnonzero((gray > INK).any(axis=0))
    digit = gray[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    h, w = digit.shape
    scale = BOX / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    digit = np.asarray(
        Image.fromarray((digit * 255).astype(np.uint8)).resize(size, Image.Resampling.LANCZOS),
        dtype=np.float64,
    )
    frame = np.zeros(IMAGE_SHAPE)
    top, left = (IMAGE_SHAPE[0] - digit.shape[0]) // 2, (IMAGE_SHAPE[1] - digit.shape[1]) // 2
    frame[top : top + digit.shape[0], left : left + digit.shape[1]] = digit
    # Shift so the centre of mass sits at the centre, as MNIST's makers did.
    ys, xs = np.indices(IMAGE_SHAPE)
    mass = frame.sum()
    dy = round((IMAGE_SHAPE[0] - 1) / 2 - (ys * frame).sum() / mass)
    dx = round((IMAGE_SHAPE[1] - 1) / 2 - (xs * frame).sum() / mass)
    frame = _shift(frame, dy, dx)
    return np.clip(frame, 0, 255).astype(np.uint8)


def _shift(frame: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """Shift with zero fill (np.roll would wrap strokes round the border)."""
    out = np.zeros_like(frame)
    h, w = frame.shape
    out[max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = frame[
        max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
    ]
    return out


def find_model(path: Path | None, root: Path) -> Path:
    """The `.keras` file of `--model` (a folder or file), or of the only model under `root`."""
    if path is None:
        found = sorted(p.parent for p in root.glob("*/model.keras"))
        if len(found) != 1:
            listed = ", ".join(str(p) for p in found) or "none"
            raise ImageError(f"{root}: pick a model with --model (found: {listed})")
        path = found[0]
    file = path / "model.keras" if path.is_dir() else path
    if not file.is_file():
        raise ImageError(f"{file}: no such model; export one with `digits export`")
    return file


def classify(model_file: Path, files: list[Path]) -> tuple[list[Prediction], list[dict[str, str]]]:
    """Predictions for the readable files, and for each unreadable one a record of the file
    and what is wrong with it (`{"file": ..., "error": ...}`)."""
    images, names, errors = [], [], []
    for f in files:
        try:
            images.append(to_mnist(read_image(f), str(f)))
            names.append(str(f))
        except ImageError as e:
            errors.append({"file": str(f), "error": str(e).removeprefix(f"{f}: ")})
    if not images:
        return [], errors
    import keras

    model = keras.saving.load_model(model_file)
    probs = model.predict(np.stack(images), verbose=0)
    predictions = []
    for name, p in zip(names, probs, strict=True):
        top = np.argsort(-p)[:3]
        predictions.append(
            Prediction(name, int(top[0]), float(p[top[0]]), [(int(d), float(p[d])) for d in top])
        )
    return predictions, errors
