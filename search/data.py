"""Digit datasets: load (npz or IDX), verify, and split.

Everything here is plain numpy so that `--help`, `digits spaces` and the data checks stay fast.
The test images are loaded and checked with the rest, but search and selection see nothing but
the train/validation split made by `split`; only final evaluation reads `Dataset.x_test`.
"""

from __future__ import annotations

import gzip
import hashlib
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

BUNDLED_MNIST = Path(__file__).parent / "datasets" / "mnist.npz"
BUNDLED_SHA256 = "06af5dfe73b70e3bc1c36439982b18a8d76803db9b544f6fdf838a37fbb01b64"
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
# The four IDX files of MNIST and its look-alikes (Fashion-MNIST, KMNIST), raw or gzipped.
IDX_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
IMAGE_SHAPE = (28, 28)
NUM_CLASSES = 10


class DataError(Exception):
    """Bad input data; the message names the file and the problem in one line."""


@dataclass(frozen=True)
class Dataset:
    """A digit dataset: uint8 images [N, 28, 28], uint8 labels 0..9."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str
    sha256: str


@dataclass(frozen=True)
class Split:
    """Training and validation arrays carved from the training images only."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray


def sha256_of(paths: list[Path]) -> str:
    """SHA-256 of the concatenated bytes of `paths` (one file: its usual checksum)."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def load(path: str | Path | None = None) -> Dataset:
    """Load the bundled MNIST (path None), a Keras-layout `.npz`, or a folder of IDX files.

    Raises:
        DataError: the file is missing, truncated, has wrong keys, shapes or labels, or the
            bundled file does not match its checksum.
    """
    path = BUNDLED_MNIST if path is None else Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    if path.is_dir():
        files = [_find_idx(path, name) for name in IDX_FILES.values()]
        arrays = {key: _read_idx(file) for key, file in zip(IDX_FILES, files, strict=True)}
        checksum = sha256_of(files)
    else:
        checksum = sha256_of([path])
        if path.resolve() == BUNDLED_MNIST.resolve() and checksum != BUNDLED_SHA256:
            raise DataError(f"{path}: checksum {checksum[:12]}… does not match the bundled MNIST")
        arrays = _read_npz(path)
    for part in ("train", "test"):
        _check(path, arrays[f"x_{part}"], arrays[f"y_{part}"], part)
    return Dataset(**arrays, source=str(path), sha256=checksum)


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    # numpy reads any file it is given: a lone array (.npy) as an array, anything else as a
    # pickle, refused with advice to unpickle it. An .npz is a zip archive; nothing else is.
    if not zipfile.is_zipfile(path):
        with path.open("rb") as f:
            cut = f.read(4) == b"PK\x03\x04"  # a zip's start, its directory (at the end) gone
        if cut:
            raise DataError(f"{path}: not a readable .npz file (a zip archive cut short)")
        keys = ", ".join(NPZ_KEYS)
        raise DataError(f"{path}: not an .npz archive (a zip of {keys}), nor a folder of IDX files")
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in NPZ_KEYS if k not in npz.files]
            if missing:
                raise DataError(f"{path}: missing key(s) {', '.join(missing)}; expected {NPZ_KEYS}")
            return {k: npz[k] for k in NPZ_KEYS}
    except DataError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise DataError(f"{path}: not a readable .npz file ({e})") from None


def _find_idx(folder: Path, stem: str) -> Path:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.exists():
            return candidate
    # Some mirrors write "train-images.idx3-ubyte"; accept that spelling too.
    dotted = stem.replace("-idx", ".idx")
    for candidate in (folder / dotted, folder / f"{dotted}.gz"):
        if candidate.exists():
            return candidate
    raise DataError(f"{folder}: missing IDX file {stem} (or {stem}.gz)")


def _read_idx(path: Path) -> np.ndarray:
    """Parse one IDX file (unsigned-byte data only, as every digit dataset uses)."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise DataError(f"{path}: cannot read ({e})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DataError(f"{path}: not an IDX file (bad magic number)")
    if raw[2] != 0x08:
        raise DataError(f"{path}: IDX data type 0x{raw[2]:02x} is not unsigned byte (0x08)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated IDX header")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(shape))
    if len(raw) - header != expected:
        raise DataError(
            f"{path}: truncated or padded: {len(raw) - header} data bytes, header says {expected}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def _check(path: Path, x: np.ndarray, y: np.ndarray, part: str) -> None:
    if x.ndim != 3 or x.shape[1:] != IMAGE_SHAPE:
        raise DataError(f"{path}: x_{part} has shape {x.shape}, expected (N, 28, 28)")
    if y.ndim != 1 or len(y) != len(x):
        raise DataError(f"{path}: y_{part} has shape {y.shape}, expected ({len(x)},)")
    if len(x) == 0:
        raise DataError(f"{path}: x_{part} is empty")
    if x.dtype != np.uint8:
        raise DataError(f"{path}: x_{part} has dtype {x.dtype}, expected uint8 pixels 0..255")
    if not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= NUM_CLASSES:
        raise DataError(f"{path}: y_{part} has labels outside 0..9")


def stratified_indices(y: np.ndarray, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Pick `size` indices with the class proportions of `y`; return (picked, rest).

    Deterministic for a seed; the per-class counts are rounded by largest remainder so they
    add up to `size` exactly.
    """
    if not 0 < size < len(y):
        raise DataError(f"split size {size} must be between 1 and {len(y) - 1}")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(y))
    classes, counts = np.unique(y, return_counts=True)
    exact = counts * size / len(y)
    quota = np.floor(exact).astype(int)
    quota[np.argsort(quota - exact)[: size - quota.sum()]] += 1
    picked = np.concatenate([order[y[order] == c][:k] for c, k in zip(classes, quota, strict=True)])
    picked = np.sort(picked)
    rest = np.setdiff1d(np.arange(len(y)), picked, assume_unique=True)
    return picked, rest


def split(data: Dataset, val_size: int, train_size: int | None = None, seed: int = 0) -> Split:
    """Carve a stratified validation split from the training images.

    Args:
        data: the dataset; its test part is never touched.
        val_size: number of validation images.
        train_size: optional smaller training subset (stratified) for fast searches.
        seed: fixes both draws.
    """
    if not 0 < val_size < len(data.y_train):
        raise DataError(
            f"{data.source}: a validation split of {val_size:,} images (--val-size) needs more "
            f"than its {len(data.y_train):,} training images"
        )
    val_idx, train_idx = stratified_indices(data.y_train, val_size, seed)
    if train_size is not None and train_size < len(train_idx):
        sub, _ = stratified_indices(data.y_train[train_idx], train_size, seed + 1)
        train_idx = train_idx[sub]
    return Split(
        x_train=data.x_train[train_idx],
        y_train=data.y_train[train_idx],
        x_val=data.x_train[val_idx],
        y_val=data.y_train[val_idx],
    )
