from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from search import data
from search.data import DataError


def write_idx(path: Path, array: np.ndarray, gz: bool = False) -> Path:
    """Write `array` (uint8) as an IDX file, the format MNIST ships in."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(n).to_bytes(4, "big") for n in array.shape
    )
    raw = header + array.astype(np.uint8).tobytes()
    if gz:
        path = path.with_name(path.name + ".gz")
        raw = gzip.compress(raw)
    path.write_bytes(raw)
    return path


def test_bundled_mnist_loads_and_is_verified():
    d = data.load()
    assert d.x_train.shape == (60000, 28, 28) and d.x_test.shape == (10000, 28, 28)
    assert d.x_train.dtype == np.uint8
    assert d.sha256 == data.BUNDLED_SHA256
    assert np.bincount(d.y_test).tolist()[:3] == [980, 1135, 1032]


def test_bundled_checksum_mismatch_is_refused(tmp_path, monkeypatch):
    fake = tmp_path / "mnist.npz"
    fake.write_bytes(data.BUNDLED_MNIST.read_bytes()[:-1] + b"x")
    monkeypatch.setattr(data, "BUNDLED_MNIST", fake)
    with pytest.raises(DataError, match="checksum"):
        data.load()


def test_npz_in_keras_layout(tmp_path, tiny_arrays):
    path = tmp_path / "tiny.npz"
    np.savez(path, **tiny_arrays)
    d = data.load(path)
    assert d.x_train.shape == (300, 28, 28) and len(d.y_test) == 50
    assert d.sha256 == data.sha256_of([path])


def test_a_validation_split_larger_than_the_data_names_file_and_option(tmp_path, tiny_arrays):
    path = tmp_path / "tiny.npz"
    np.savez(path, **tiny_arrays)
    with pytest.raises(DataError, match=r"tiny.npz: a validation split of 5,000 images \(--val"):
        data.split(data.load(path), val_size=5000)


@pytest.mark.parametrize("gz", [False, True])
def test_idx_folder_raw_and_gz(tmp_path, tiny_arrays, gz):
    for key, stem in data.IDX_FILES.items():
        write_idx(tmp_path / stem, tiny_arrays[key], gz=gz)
    d = data.load(tmp_path)
    for key in data.NPZ_KEYS:
        np.testing.assert_array_equal(getattr(d, key), tiny_arrays[key])


def _bad_npz(tmp_path, arrays, **changes):
    path = tmp_path / "bad.npz"
    arrays = {**arrays, **changes}
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"y_test": None}, "missing key"),
        ({"x_train": np.zeros((300, 28, 27), np.uint8)}, r"x_train has shape \(300, 28, 27\)"),
        ({"y_train": np.zeros(299, np.uint8)}, "y_train has shape"),
        ({"y_train": np.full(300, 10, np.uint8)}, "labels outside 0..9"),
        ({"x_test": np.zeros((50, 28, 28), np.float32)}, "dtype float32"),
    ],
)
def test_bad_npz_names_file_and_problem(tmp_path, tiny_arrays, change, message):
    path = _bad_npz(tmp_path, tiny_arrays, **change)
    with pytest.raises(DataError, match=message) as e:
        data.load(path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)


def test_missing_and_truncated_files(tmp_path, tiny_arrays):
    with pytest.raises(DataError, match="no such file"):
        data.load(tmp_path / "nope.npz")
    path = tmp_path / "cut.npz"
    np.savez(path, **tiny_arrays)
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(DataError, match=r"not a readable \.npz file \(a zip archive cut short\)"):
        data.load(path)
    # A lone array, or any other file, is no .npz (numpy would read one, unpickle the other).
    np.save(tmp_path / "one.npy", tiny_arrays["x_train"])
    (tmp_path / "notes.npz").write_text("not arrays")
    for name in ("one.npy", "notes.npz"):
        with pytest.raises(DataError, match=rf"{name}: not an \.npz archive \(a zip of x_train"):
            data.load(tmp_path / name)


def test_bad_idx_files(tmp_path, tiny_arrays):
    for key, stem in data.IDX_FILES.items():
        write_idx(tmp_path / stem, tiny_arrays[key])
    images = tmp_path / data.IDX_FILES["x_train"]
    images.write_bytes(images.read_bytes()[:-5])
    with pytest.raises(DataError, match="truncated"):
        data.load(tmp_path)
    images.write_bytes(b"\x01\x02\x03\x04rest")
    with pytest.raises(DataError, match="bad magic"):
        data.load(tmp_path)
    images.unlink()
    with pytest.raises(DataError, match="missing IDX file train-images-idx3-ubyte"):
        data.load(tmp_path)


def test_split_is_stratified_disjoint_and_seeded():
    d = data.load()
    s = data.split(d, val_size=5000, seed=0)
    assert len(s.y_val) == 5000 and len(s.y_train) == 55000
    share_val = np.bincount(s.y_val) / 5000
    share_all = np.bincount(d.y_train) / 60000
    assert np.abs(share_val - share_all).max() < 0.001
    again = data.split(d, val_size=5000, seed=0)
    np.testing.assert_array_equal(s.y_val, again.y_val)
    other = data.split(d, val_size=5000, seed=1)
    assert not np.array_equal(s.x_val, other.x_val)
    # No validation image is also a training image (the split is on indices).
    val_idx, train_idx = data.stratified_indices(d.y_train, 5000, 0)
    assert not set(val_idx) & set(train_idx)


def test_train_subset_is_stratified():
    s = data.split(data.load(), val_size=1000, train_size=2000, seed=0)
    assert len(s.y_train) == 2000
    assert np.bincount(s.y_train, minlength=10).min() >= 150
