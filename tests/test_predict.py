"""Digits as people photograph and scan them, converted the MNIST way (search/predict.py)."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from search import data
from search.predict import (
    ImageError,
    classify,
    convert,
    convert_number,
    drop_lines,
    find_model,
    images_in,
    on_the_sheet,
    read_image,
    runs,
    side_by_side,
    strokes,
    to_mnist,
)
from search.study import StudyError


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    d = data.load()
    return d.x_test[:12], d.y_test[:12]


def page(
    digit: np.ndarray, rng: np.random.Generator, ruled: bool = False, squared: bool = False
) -> np.ndarray:
    """`digit` in dark ink, off-centre on a 160-pixel grey page with grain, a brightness
    gradient, a soft shadow and, with `ruled`, a printed line across it, with `squared`, the
    light lines of squared paper. A row of digits widens the page as it needs."""
    width = round(90 * digit.shape[1] / digit.shape[0])
    ink = np.zeros((160, width + 70))
    big = np.asarray(Image.fromarray(digit).resize((width, 90), Image.Resampling.BILINEAR))
    ink[20:110, 50 : 50 + width] = big / 255
    if ruled:
        ink[125:127, :] = 0.5
    if squared:
        ink[5::18, :] = np.maximum(ink[5::18, :], 0.3)
        ink[:, 5::18] = np.maximum(ink[:, 5::18], 0.3)
    xs = np.mgrid[0 : ink.shape[0], 0 : ink.shape[1]][1] / ink.shape[1]
    light = (1 - 0.35 * xs) * (1 - 0.3 * ndimage.gaussian_filter((xs < 0.4) * 1.0, 12))
    paper = (215 * (1 - ink) + 40 * ink) * light
    return np.clip(paper + rng.normal(0, 6, paper.shape), 0, 255)


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel().astype(float), b.ravel().astype(float))[0, 1])


def alike(a: np.ndarray, b: np.ndarray) -> float:
    """The correlation of two 28x28 digits, the one shifted by up to a pixel to match: a
    thin 1 centred a pixel apart correlates poorly, yet is the same digit."""
    return max(
        correlation(np.roll(a, (dy, dx), axis=(0, 1)), b) for dy in (-1, 0, 1) for dx in (-1, 0, 1)
    )


def test_a_photographed_digit_converts_to_what_the_clean_digit_does(digits):
    rng = np.random.default_rng(0)
    for digit in digits[0]:
        clean = to_mnist(digit.astype(float))
        photo = to_mnist(page(digit, rng))
        assert correlation(photo, clean) > 0.8
        # A ruled line across the page is not part of the digit, nor are squared paper's
        # lines, where they cross it too.
        assert correlation(to_mnist(page(digit, rng, ruled=True)), photo) > 0.85
        assert alike(to_mnist(page(digit, rng, squared=True)), photo) > 0.9


def test_a_faint_pencil_digit_converts_to_what_the_clean_digit_does(digits):
    # Strokes 15 grey levels below the paper, its grain's spread 3: each stroke pixel is
    # within grain of some paper pixel, but strokes stand out over their width.
    rng = np.random.default_rng(3)
    for digit in digits[0]:
        big = np.asarray(Image.fromarray(digit).resize((110, 110), Image.Resampling.BILINEAR))
        ink = np.zeros((200, 200))
        ink[40:150, 50:160] = big / 255
        faint = 215 - 15 * ink + rng.normal(0, 3, ink.shape)
        assert alike(to_mnist(faint), to_mnist(215 - 150 * ink)) > 0.9


def test_a_bold_digit_cropped_tight_keeps_its_strokes_whole():
    # A ring whose stroke is as wide as the window the paper's level is modelled through
    # (a quarter of a small picture), as a marker's digit cropped tight or a thumbnail has
    # them: that window took half of it for paper, and the 0 came out thin and broken.
    def ring(size: int) -> np.ndarray:
        yy, xx = (np.mgrid[:size, :size] - (size - 1) / 2) / size
        return np.where((np.hypot(yy, xx) <= 0.45) & (np.hypot(yy, xx) >= 0.2), 30.0, 230.0)

    roomy = to_mnist(ring(64))
    for size in (12, 16, 24):
        tight = to_mnist(ring(size))
        assert (tight > 128).sum() >= 0.8 * (roomy > 128).sum()
        assert alike(tight, roomy) > 0.88


def test_digits_written_side_by_side_are_counted(digits):
    rng = np.random.default_rng(2)
    x = digits[0]
    for i in range(len(x)):
        # One digit, clean or photographed, is one (a 5's bar and a 4's strokes included).
        assert convert(x[i].astype(float))[1] == 1
        assert convert(page(x[i], rng))[1] == 1
    for i in range(0, len(x) - 2, 3):
        gap = np.zeros((28, i % 5))
        row = np.concatenate([x[i], gap, x[i + 1], x[i + 2]], axis=1)
        assert convert(row.astype(float))[1] == 3
        assert convert(page(np.concatenate([x[i], x[i + 1]], axis=1), rng))[1] == 2
    # A dash beside a digit is no second digit.
    dash = np.zeros((28, 12))
    dash[13:15, 2:10] = 255
    assert side_by_side(np.concatenate([x[0], dash], axis=1) > 128) == 1
    # Nor is a fine pen's 0 whose outline broke at its top and bottom into two arcs.
    ys, xs = np.mgrid[0:200, 0:140]
    ring = np.abs(((ys - 100) / 95) ** 2 + ((xs - 70) / 65) ** 2 - 1) < 0.02
    ring[:8], ring[-8:] = False, False
    assert ndimage.label(ring, structure=np.ones((3, 3)))[1] == 2
    assert side_by_side(ring) == 1


def test_a_number_splits_into_its_digits_each_converted_as_alone(digits):
    rng = np.random.default_rng(3)
    x = digits[0]
    dash = np.zeros((28, 14))
    dash[13:16, 4:10] = 255  # a dash written apart from the digits around it
    for i in range(0, len(x) - 2, 3):
        gap = np.zeros((28, 2 + i % 4))
        row = np.concatenate([x[i], gap, x[i + 1], dash, x[i + 2]], axis=1)
        clean = convert_number(row.astype(float))
        assert len(clean) == 3  # the dash is no digit
        for got, k in zip(clean, (i, i + 1, i + 2), strict=True):
            assert correlation(got, to_mnist(x[k].astype(float))) > 0.99
        photo = convert_number(page(row, rng))
        assert len(photo) == 3
        for got, k in zip(photo, (i, i + 1, i + 2), strict=True):
            assert correlation(got, to_mnist(x[k].astype(float))) > 0.8  # as a digit alone
    # Digits written close, their ink a sixth of their height apart: each read alone.
    for i in range(0, len(x) - 1, 2):
        a, b = (x[k][:, x[k].max(axis=0) > 0] for k in (i, i + 1))
        row = np.concatenate([np.zeros((28, 4)), a, np.zeros((28, 3)), b, np.zeros((28, 4))], 1)
        close = convert_number(row)
        assert len(close) == 2
        for got, k in zip(close, (i, i + 1), strict=True):
            assert correlation(got, to_mnist(x[k].astype(float))) > 0.95
    # A digit alone is a number of one digit, converted as `to_mnist` converts it.
    (alone,) = convert_number(x[0].astype(float))
    np.testing.assert_array_equal(alone, to_mnist(x[0].astype(float)))


def test_a_digit_enlarged_by_repeating_its_pixels_converts_as_at_its_own_size(digits):
    # Blocks read as strokes as wide would hollow the digit out (a bold 8x8 digit zoomed 8x).
    for digit in digits[0][:4]:
        for k in (2, 5):
            blocky = np.kron(digit.astype(float), np.ones((k, k)))
            np.testing.assert_array_equal(to_mnist(blocky), to_mnist(digit.astype(float)))
    bold = np.zeros((8, 8))
    bold[1:7, 2:6], bold[3:5, 3:5] = 255, 0  # a 0 in strokes two pixels wide
    np.testing.assert_array_equal(to_mnist(np.kron(bold, np.ones((8, 8)))), to_mnist(bold))


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
    # Paper and its grain alone, scanned or photographed (lighting, shadow): no digit either.
    rng = np.random.default_rng(4)
    for _ in range(5):
        scanned = np.clip(rng.uniform(190, 240) + rng.normal(0, 5, (160, 160)), 0, 255)
        photographed = page(np.zeros((28, 28), np.uint8), rng)
        for blank in (scanned, photographed):
            with pytest.raises(ImageError, match=r"empty image .*only the paper's grain"):
                to_mnist(blank)
    # Nor is a ruled line with nothing written on it, or a dash alone.
    with pytest.raises(ImageError, match="empty image"):
        to_mnist(page(np.zeros((28, 28), np.uint8), rng, ruled=True))
    dash = np.zeros((28, 28), np.uint8)
    dash[13:16, 6:22] = 255
    with pytest.raises(ImageError, match="empty image"):
        to_mnist(dash.astype(float))


def found_empty(pictures: list[np.ndarray]) -> float:
    """The share of `pictures` in which no digit is found."""
    empty = 0
    for picture in pictures:
        try:
            to_mnist(picture)
        except ImageError:
            empty += 1
    return empty / len(pictures)


def test_blank_squared_paper_and_a_blank_sheet_on_a_table_mostly_hold_no_digit():
    # What the lattice leaves once its lines are dropped are specks (`SPECK`); a sheet with
    # nothing on it is cut out of the table as one with a digit is. Not every time: a piece
    # of a line the lighting broke off, or a shadow's edge, can still stand as a stroke.
    rng = np.random.default_rng(5)
    blank = np.zeros((28, 28), np.uint8)
    assert found_empty([page(blank, rng, squared=True) for _ in range(20)]) >= 0.75
    assert found_empty([on_a_table(page(blank, rng), rng) for _ in range(20)]) >= 0.75


def test_specks_alone_are_no_digit_but_a_small_digit_is_one():
    mask = np.zeros((400, 400), bool)
    mask[::37, ::41] = True  # grain, or the corners squared paper's lines leave
    mask[100:108, 200:203] = True
    assert strokes(mask) is None
    mask[300:320, 50:53] = True  # a 1 a twentieth of the picture tall
    kept = strokes(mask)
    assert kept[310, 51] and not kept[0, 0]


def _glyph() -> np.ndarray:
    """A dark 7 on light paper, 120x100: a bar and a slanted stem."""
    page = np.full((120, 100), 235, np.uint8)
    page[15:25, 15:85] = 20
    for i in range(80):
        page[25 + i, 75 - i // 2 - 5 : 75 - i // 2 + 5] = 20
    return page


def test_a_phone_photo_is_turned_upright_by_its_exif_orientation(tmp_path):
    Image.fromarray(_glyph()).save(tmp_path / "upright.jpg", quality=95)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored turned a quarter left: "rotate 90 degrees clockwise to view"
    sideways = Image.fromarray(_glyph()).transpose(Image.Transpose.ROTATE_90)
    sideways.save(tmp_path / "sideways.jpg", quality=95, exif=exif.tobytes())
    upright = to_mnist(read_image(tmp_path / "upright.jpg"))
    assert correlation(to_mnist(read_image(tmp_path / "sideways.jpg")), upright) > 0.95


def test_16_bit_and_float_images_read_as_their_8_bit_twin(tmp_path):
    glyph = _glyph()
    Image.fromarray(glyph).save(tmp_path / "eight.png")
    Image.fromarray(glyph.astype(np.uint16) * 257).save(tmp_path / "sixteen.png")
    Image.fromarray((glyph / 255).astype(np.float32)).save(tmp_path / "float.tif")
    np.save(tmp_path / "sixteen.npy", glyph.astype(np.uint16) * 257)
    eight = read_image(tmp_path / "eight.png")
    for twin in ("sixteen.png", "float.tif", "sixteen.npy"):
        np.testing.assert_allclose(read_image(tmp_path / twin), eight, atol=0.5)


def test_a_digit_on_a_transparent_background_reads_in_dark_or_light_ink(tmp_path):
    upright = to_mnist(_glyph().astype(float))
    strokes = _glyph() < 128
    # Transparent pixels keep a colour of their own, which must not show.
    for name, ink, hidden in (
        ("dark", (0, 0, 0), (0, 0, 0)),
        ("light", (255, 255, 255), (255, 255, 255)),
        ("blue", (30, 30, 200), (255, 255, 255)),
    ):
        rgba = np.where(strokes[..., None], (*ink, 255), (*hidden, 0)).astype(np.uint8)
        Image.fromarray(rgba).save(tmp_path / f"{name}.png")
        assert correlation(to_mnist(read_image(tmp_path / f"{name}.png")), upright) > 0.95, name
    # Paper with transparent rounded corners, or cut out, most of the picture transparent
    # around it: the transparent part takes the paper's shade.
    photo = np.dstack([np.repeat(_glyph()[..., None], 3, axis=2), np.full(strokes.shape, 255)])
    photo[:8, :8, 3] = photo[:8, -8:, 3] = photo[-8:, :8, 3] = photo[-8:, -8:, 3] = 0
    cutout = np.zeros((300, 300, 4))
    cutout[90:210, 100:200] = photo
    cutout[180:210, 170:200, 3] = 0  # a corner torn off: the sheet is not convex
    for name, image in (("corners", photo), ("cutout", cutout)):
        Image.fromarray(image.astype(np.uint8)).save(tmp_path / f"{name}.png")
        assert correlation(to_mnist(read_image(tmp_path / f"{name}.png")), upright) > 0.95, name


def test_a_damaged_or_foreign_model_is_one_line_naming_it(tmp_path, run_cli):
    import keras

    Image.fromarray(_glyph()).save(tmp_path / "seven.png")
    (tmp_path / "junk.keras").write_text("not a model")
    with zipfile.ZipFile(tmp_path / "zip.keras", "w") as z:
        z.writestr("notes.txt", "a zip, but no model in it")
    other = keras.Sequential(
        [keras.Input((32, 32, 3)), keras.layers.Flatten(), keras.layers.Dense(10)]
    )
    other.save(tmp_path / "cifar.keras")
    for name, message in (
        ("junk.keras", "damaged or not a Keras model (a .keras file is a zip archive)"),
        ("zip.keras", "not a model Keras can load"),
        ("cifar.keras", "takes inputs of shape (32, 32, 3), not digits of (28, 28)"),
    ):
        code, _, err = run_cli("predict", tmp_path / "seven.png", "--model", tmp_path / name)
        # (TensorFlow's start-up lines come from this test's own import of Keras above.)
        assert code == 2 and err.strip().splitlines()[-1].startswith(
            f"error: {tmp_path / name}: {message}"
        )


def test_files_that_are_no_digit_images_are_named_with_the_reason(tmp_path, monkeypatch):
    Image.fromarray(_glyph()).save(tmp_path / "huge.png")
    with monkeypatch.context() as patch, pytest.raises(ImageError, match=r"huge\.png: too large"):
        patch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # Pillow refuses over twice this
        read_image(tmp_path / "huge.png")
    (tmp_path / "cut.png").write_bytes((tmp_path / "huge.png").read_bytes()[:60])
    (tmp_path / "notes.png").write_text("a shopping list, saved as .png")
    np.savez(tmp_path / "digits.npz", x=_glyph())
    np.save(tmp_path / "batch.npy", np.stack([_glyph()] * 3))
    (tmp_path / "digits.npz").rename(tmp_path / "archive.npy")  # an archive, named as one array
    np.save(tmp_path / "nan.npy", np.full((28, 28), np.nan))
    (tmp_path / "folder").mkdir()
    for name, reason in [
        ("cut.png", r"a damaged or unsupported image \(image file is truncated\)"),
        ("notes.png", r"not an image file \(no image format recognises it\)"),
        ("nan.npy", "the array holds NaN or infinite values"),
        ("archive.npy", r"not a \.npy array \(no numpy array header\)"),
        ("batch.npy", "holds 3 images; a file is one digit"),
        ("folder", "a folder, not an image file"),
        ("missing.png", "no such file"),
    ]:
        with pytest.raises(ImageError, match=f"{name}: {reason}"):
            read_image(tmp_path / name)

    # Not "damaged" where the file is only out of reach (simulated: root reads every file).
    def refuse(path):
        raise PermissionError(13, "Permission denied", str(path))

    with monkeypatch.context() as patch, pytest.raises(ImageError, match="permission denied"):
        patch.setattr(Image, "open", refuse)
        read_image(tmp_path / "cut.png")


def test_the_model_is_the_only_export_or_the_one_named(tmp_path):
    models = tmp_path / "best_models"
    with pytest.raises(StudyError, match="no exported model here; make one"):
        find_model(None, models)  # before any run: not even the folder
    (models / "quick").mkdir(parents=True)
    (models / "quick" / "model.keras").touch()
    assert find_model(None, models) == models / "quick" / "model.keras"
    (models / "full").mkdir()
    (models / "full" / "model.keras").touch()
    with pytest.raises(StudyError, match=r"2 models here \(.*full, .*quick\): pick one"):
        find_model(None, models)
    assert find_model(models / "full", models) == models / "full" / "model.keras"
    with pytest.raises(StudyError, match="no such model"):
        find_model(models / "seed", models)


def test_a_folder_stands_for_the_images_in_it(tmp_path):
    for name in ("b.png", "a.JPG", "c.npy", "notes.txt"):
        (tmp_path / name).touch()
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "d.png").touch()
    assert [f.name for f in images_in(tmp_path)] == ["a.JPG", "b.png", "c.npy"]
    (tmp_path / "empty").mkdir()
    # No image to classify: the model is not even loaded.
    predictions, errors = classify(tmp_path / "no-model.keras", [tmp_path / "empty"])
    assert predictions == []
    assert errors == [{"file": str(tmp_path / "empty"), "error": "no image files in this folder"}]


def test_runs_are_the_mask_opened_by_a_line():
    rng = np.random.default_rng(5)
    for _ in range(100):
        mask = rng.random(rng.integers(3, 60, 2)) < rng.uniform(0.5, 0.98)
        for axis in (0, 1):
            length = int(rng.integers(1, mask.shape[axis] + 2))
            line = np.ones((1, length) if axis == 1 else (length, 1))
            opened = ndimage.binary_opening(mask, structure=line)
            np.testing.assert_array_equal(runs(mask, length, axis), opened)


def test_a_line_is_dropped_but_not_where_a_stroke_crosses_it():
    mask = np.zeros((100, 100), bool)
    mask[50, :] = True  # a ruled line, or one of squared paper's
    mask[20:80, 40:46] = True  # a stroke across it
    out = drop_lines(mask)
    assert not out[50, :35].any() and not out[50, 51:].any()
    assert out[20:80, 40:46].all()  # whole, not cut in two where it crossed the line


def test_a_fine_pen_digit_drawn_large_gets_strokes_as_wide_as_mnist_ones():
    from PIL import ImageDraw

    def four(width: int) -> np.ndarray:
        page = Image.new("L", (400, 500), 235)
        pen = ImageDraw.Draw(page)
        pen.line([(250, 60), (90, 330), (330, 330)], fill=20, width=width)
        pen.line([(260, 180), (260, 460)], fill=20, width=width)
        return np.asarray(page, dtype=np.float64)

    ballpoint, marker = to_mnist(four(2)), to_mnist(four(60))
    assert ballpoint.max() == 255 and (ballpoint > 128).sum() >= 0.6 * (marker > 128).sum()
    assert correlation(ballpoint, marker) > 0.85


TILT = 12  # degrees a photographed sheet is turned


def on_a_table(page: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """`page` photographed lying on a darker table: tilted, the table around it."""
    sheet = np.pad(page, 40, constant_values=-1.0)
    sheet = ndimage.rotate(sheet, TILT, reshape=False, order=0, cval=-1.0)
    table = 0.4 * page.min() + rng.normal(0, 5, sheet.shape)
    return np.clip(np.where(sheet < 0, table, sheet), 0, 255)


def test_a_sheet_photographed_on_a_table_converts_as_the_sheet_alone(digits):
    rng = np.random.default_rng(2)
    for digit in digits[0]:
        sheet = page(digit, rng)
        alone = to_mnist(ndimage.rotate(sheet, TILT, order=1, mode="nearest"))
        assert correlation(to_mnist(on_a_table(sheet, rng)), alone) > 0.8


def test_only_a_sheet_on_a_table_is_cut_out(digits):
    rng = np.random.default_rng(3)
    bold = data.load().x_test[[495, 894, 947]]  # an 8, a 3 and a 9 with small, round holes
    for digit in [*digits[0], *bold]:
        # A light digit on a dark ground (its holes are no ink), and a page under a shadow.
        clean = np.asarray(Image.fromarray(digit).resize((112, 112)), dtype=np.float64)
        # Shrunk to 8x8 its strokes are a blob with no hole, as wide as a blank sheet.
        tiny = np.asarray(Image.fromarray(digit).resize((8, 8)), dtype=np.float64)
        shaded = page(digit, rng)
        for picture in (clean, tiny, shaded):
            assert on_the_sheet(picture) is picture
