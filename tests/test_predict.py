"""Digits as people photograph and scan them, converted the MNIST way (search/predict.py)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from search import data
from search.predict import ImageError, read_image, to_mnist


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    d = data.load()
    return d.x_test[:12], d.y_test[:12]


def page(digit: np.ndarray, rng: np.random.Generator, ruled: bool = False) -> np.ndarray:
    """`digit` in dark ink, off-centre on a 160-pixel grey page with grain, a brightness
    gradient, a soft shadow and, with `ruled`, a printed line across it."""
    ink = np.zeros((160, 160))
    big = np.asarray(Image.fromarray(digit).resize((90, 90), Image.Resampling.BILINEAR)) / 255
    ink[20:110, 50:140] = big
    if ruled:
        ink[125:127, :] = 0.5
    xs = np.mgrid[0:160, 0:160][1] / 160
    light = (1 - 0.35 * xs) * (1 - 0.3 * ndimage.gaussian_filter((xs < 0.4) * 1.0, 12))
    paper = (215 * (1 - ink) + 40 * ink) * light
    return np.clip(paper + rng.normal(0, 6, paper.shape), 0, 255)


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel().astype(float), b.ravel().astype(float))[0, 1])


def test_a_photographed_digit_converts_to_what_the_clean_digit_does(digits):
    rng = np.random.default_rng(0)
    for digit in digits[0]:
        clean = to_mnist(digit.astype(float))
        photo = to_mnist(page(digit, rng))
        assert correlation(photo, clean) > 0.8
        # A ruled line across the page is not part of the digit.
        assert correlation(to_mnist(page(digit, rng, ruled=True)), photo) > 0.85


def test_the_conversion_is_an_mnist_digit(digits):
    converted = to_mnist(page(digits[0][0], np.random.default_rng(1)))
    assert converted.shape == (28, 28) and converted.dtype == np.uint8
    assert converted.max() == 255  # strokes at full strength
    rows, cols = np.flatnonzero(converted.any(1)), np.flatnonzero(converted.any(0))
    assert max(rows[-1] - rows[0], cols[-1] - cols[0]) <= 21  # fitted into 20x20 (+ blur)
    ys, xs = np.indices(converted.shape)
    centre = [(ys * converted).sum() / converted.sum(), (xs * converted).sum() / converted.sum()]
    assert np.allclose(centre, 13.5, atol=1)


def test_a_blank_or_grain_only_page_has_no_digit(tmp_path):
    with pytest.raises(ImageError, match="empty image"):
        to_mnist(np.full((50, 50), 200.0), "blank.png")
    Image.fromarray(np.full((40, 60), 128, np.uint8)).save(tmp_path / "grey.png")
    with pytest.raises(ImageError, match=r"grey\.png: empty image"):
        to_mnist(read_image(tmp_path / "grey.png"), "grey.png")
