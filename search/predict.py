"""Classify people's own digit images with an exported model.

Images are converted the way MNIST was made: grayscale, inverted when the background is light
(MNIST digits are light on dark), cropped to the digit, fitted into a 20x20 box keeping the
aspect ratio, and centred by centre of mass in a 28x28 frame. Photos and scans need more
first: a sheet cut out of the table it lies on, the paper's lighting taken away, faint strokes
lifted out of the paper's grain, specks and ruled lines dropped, a fine pen's strokes widened
to MNIST's. `.npy` arrays go through the same steps. One image is one digit: where its strokes
stand apart in a row, as a number's digits do, the prediction carries a warning
(`side_by_side`). Read as a number (`convert_number`), the strokes are split there instead
and each digit converted as if alone.
"""

from __future__ import annotations

import struct
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError
from scipy import ndimage
from scipy.spatial import ConvexHull

from search.data import IMAGE_SHAPE
from search.quiet import quiet_tensorflow
from search.study import StudyError, atomic_path

BOX = 20  # MNIST fits each digit into 20x20, then centres it in 28x28
INK = 0.2  # a pixel with less than this share of the strongest ink is never a stroke
KEEP = 0.1  # strokes this share of the largest one's size or more belong to the digit
# The largest stroke spanning less than this share of the picture's longer side is a speck
# (grain, a square's corner on squared paper): a digit at the working size would be a dozen
# pixels tall. Every digit of the photos benchmark spans 0.09 or more (benchmarks/photos.py).
SPECK = 0.03
WORK_SIZE = 400  # pixels on the longer side the conversion works at
SHEET = 0.2  # the least share of a photo a sheet of paper on a table is taken to fill
EDGE = 0.4  # a sheet's edge: its grey clears the table's by this share of their step or more
BLANK_SHEET = 0.4  # a blank sheet holds a disc this share of the picture's shorter side wide
PHOTO = 64  # pixels on the shorter side a photo of a blank sheet has at least
# MNIST's strokes are 0.10 (its thinnest) to 0.14 (median) of the digit's longer side wide:
# a digit drawn with a fine pen, shrunk to 20x20, would be a faint hairline. Strokes under
# half the thinnest are widened to the median; wider ones are left as drawn (a crop widened
# by a ruled line's remnants reads thinner than its strokes are).
THIN, STROKE = 0.05, 0.14
# Digits written side by side stand apart by more than GAP of their height; strokes closer
# than that are one digit's (a 4 whose bar stops short of its stem). Breaks in a stroke of up
# to about twice BRIDGE of the height are bridged first (a fine pen's 0 drawn as two arcs).
GAP, BRIDGE = 0.1, 0.04
# Read as a number, a picture is expected to hold digits in a row, often written closer than
# GAP: there they stand apart by NUMBER_GAP. On the photos benchmark, it reads two digits
# written close right where GAP read them as one, and splits 0.4% of single digits at most
# (GAP: 0.2%) (benchmarks/photos.py).
NUMBER_GAP = 0.03
# Ink that stands this many spreads of the paper's grain above it is a stroke's; a split of
# the grain itself in two (a faint pencil, or no digit at all) stands about 2 apart. Below
# it, the picture is smoothed by GRAIN pixels first, which lifts faint strokes above the
# grain but dims thin printed lines below the threshold in places (they would stay).
SEPARATION, GRAIN = 3.0, 0.7
# Still that close once smoothed, with over GRAIN_ONLY of the picture read as ink, Otsu has
# split the grain itself near its median: there is no digit to read. Pages of grain alone
# read so as about half ink, faint pencil digits that stay grainy as a fifth to a half; on
# the photos benchmark the rule finds no digit in 5.7% of the pencil's, most of which were
# read wrong, and in every scanned blank page (benchmarks/photos.py).
GRAIN_ONLY = 0.35
# The paper's level is modelled through a window a quarter of the picture wide, which takes
# strokes about as wide for paper: those of a bold digit cropped tight (a marker, a thumbnail,
# the UCI digits' 8x8). Strokes this share of the window wide or more are measured from the
# level of the paper at the picture's border instead (most of MNIST's measure 0.3-0.6).
BOLD = 0.65
NATIVE = 8  # a picture of pixel blocks keeps at least this many pixels a side (`native`)


class ImageError(Exception):
    """A file that cannot be read as a digit image; the message names the file."""


@dataclass(frozen=True)
class Prediction:
    file: str
    digit: int
    probability: float
    top3: list[tuple[int, float]]
    image: np.ndarray  # the 28x28 digit the model saw
    side_by_side: int = 1  # digits the file seemed to hold in a row, all read as one

    @property
    def warning(self) -> str | None:
        """What a reader of the prediction should know, or None."""
        return several_digits(self.side_by_side)

    def as_dict(self) -> dict[str, Any]:
        """The prediction as `digits predict --json` prints it (`warning` where there is one)."""
        warning = {"warning": self.warning} if self.warning else {}
        return {
            "file": self.file,
            "digit": self.digit,
            "probability": round(self.probability, 6),
            "top3": [{"digit": d, "probability": round(q, 6)} for d, q in self.top3],
            **warning,
        }


@dataclass(frozen=True)
class Number:
    """A number read from one image: its digits, left to right."""

    file: str
    digits: list[Prediction]

    @property
    def text(self) -> str:
        return "".join(str(d.digit) for d in self.digits)

    @property
    def probability(self) -> float:
        """The product of its digits' probabilities: the chance that every one is right, as
        far as the model's probabilities are and the digits' errors are independent."""
        return float(np.prod([d.probability for d in self.digits]))

    @property
    def image(self) -> np.ndarray:
        """The 28x28 digits the model saw, side by side."""
        return np.hstack([d.image for d in self.digits])

    warning = None  # each digit is read by itself: no several read as one

    def as_dict(self) -> dict[str, Any]:
        """The number as `digits predict --number --json` prints it."""
        return {
            "file": self.file,
            "number": self.text,
            "probability": round(self.probability, 6),
            "digits": [{k: v for k, v in d.as_dict().items() if k != "file"} for d in self.digits],
        }


def several_digits(count: int) -> str | None:
    """The warning for an image whose strokes stand for `count` digits side by side, or None
    for one."""
    if count < 2:
        return None
    return (
        f"the image seems to hold {count} digits side by side, read here as one: give each "
        "digit its own image, or read the image as a number (--number; api.read_numbers)"
    )


def images_in(folder: Path) -> list[Path]:
    """The image files in `folder` (by suffix, sorted; not in its subfolders)."""
    suffixes = set(Image.registered_extensions()) | {".npy"}
    return sorted(f for f in folder.iterdir() if f.is_file() and f.suffix.lower() in suffixes)


def read_image(path: Path) -> np.ndarray:
    """A grayscale float array 0..255 of any PNG/JPEG/TIFF/... (colour, alpha, grey, 16-bit
    or float) or `.npy`; a photo turned upright as its EXIF orientation says."""
    if path.is_dir():
        raise ImageError(f"{path}: a folder, not an image file")
    if not path.is_file():
        raise ImageError(f"{path}: no such file")
    if path.suffix.lower() == ".npy":
        # numpy reads whatever it is given (an .npz as an archive, other files as pickles).
        with path.open("rb") as f:
            if f.read(6) != b"\x93NUMPY":
                raise ImageError(f"{path}: not a .npy array (no numpy array header)")
        try:
            array = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as e:
            raise ImageError(f"{path}: not a readable .npy array ({e})") from None
        why = "a file is one digit (search.api.predict takes an array of many)"
        return one_image(array, str(path), why)
    try:
        with Image.open(path) as im:
            im.load()
            # Phones store a photo as the sensor saw it and say in EXIF how to turn it.
            im = ImageOps.exif_transpose(im)
            if im.mode.startswith(("I", "F")):  # 16-bit, 32-bit or float grey
                return _as_255(np.asarray(im, dtype=np.float64), im.mode.startswith("I;16"))
            if im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info:
                im = on_background(im.convert("RGBA"))
            return np.asarray(im.convert("L"), dtype=np.float64)
    except Image.DecompressionBombError:
        raise ImageError(
            f"{path}: too large to read safely (over {2 * Image.MAX_IMAGE_PIXELS:,} pixels)"
        ) from None
    except PermissionError:
        raise ImageError(f"{path}: not readable (permission denied)") from None
    except UnidentifiedImageError:  # no format's header matches: another kind of file
        raise ImageError(f"{path}: not an image file (no image format recognises it)") from None
    # A format recognised, its data broken (a file cut short, a bad chunk) or in a variant no
    # decoder here reads: Pillow's decoders raise more than OSError, and their message says so.
    except (OSError, SyntaxError, ValueError, EOFError, struct.error) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ImageError(f"{path}: a damaged or unsupported image ({reason})") from None


def image_batch(array: np.ndarray, name: str = "images") -> np.ndarray:
    """`array` as a batch [N, H, W] of grey images on the 0..255 scale.

    One image [H, W] or several [N, H, W], either with a last axis of 1, 3 or 4 channels
    (grey, RGB, RGBA: their mean, alpha left out; no picture is 1-4 pixels wide); booleans,
    uint8, 16-bit or float, 0..255 or 0..1, each image judged by itself as a file is.

    Raises:
        ImageError: not numbers, not finite, or of another shape; the message starts with
            `name`.
    """
    array = np.asarray(array)
    shape = array.shape
    if array.dtype == bool:  # a mask: ink where True
        array = array.astype(np.uint8)
    if not np.issubdtype(array.dtype, np.number) or np.iscomplexobj(array):
        raise ImageError(f"{name}: expected numbers, got an array of {array.dtype}")
    if array.ndim in (3, 4) and shape[-1] in (1, 3, 4):
        array = array[..., :3].mean(axis=-1)
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3 or 0 in array.shape[1:]:
        raise ImageError(
            f"{name}: expected one image [H, W] or several [N, H, W] (either with a last axis "
            f"of 1, 3 or 4 channels), got shape {shape}"
        )
    if not np.isfinite(array).all():
        raise ImageError(f"{name}: the array holds NaN or infinite values")
    return np.array([_as_255(image.astype(np.float64)) for image in array]).reshape(array.shape)


def one_image(array: np.ndarray, name: str, why: str) -> np.ndarray:
    """`image_batch`'s image where `array` must hold one; else ImageError saying `why`."""
    batch = image_batch(array, name)
    if len(batch) != 1:
        raise ImageError(f"{name}: holds {len(batch)} images; {why}")
    return batch[0]


def named_images(
    images: np.ndarray | str | Path | Sequence[np.ndarray | str | Path],
) -> list[tuple[str, np.ndarray, bool]]:
    """(name, grey image 0..255, whether it came as an array) for each image of `images`: an
    array of one image or many (`image_batch`), one file (`read_image`), or a list of files
    and arrays of one image each (photos of different sizes)."""
    if isinstance(images, np.ndarray):
        return [(f"image {i}", image, True) for i, image in enumerate(image_batch(images))]
    named = []
    for i, item in enumerate([images] if isinstance(images, str | Path) else images):
        if isinstance(item, np.ndarray):
            image = one_image(item, f"image {i}", "each item of a list is one image")
            named.append((f"image {i}", image, True))
        else:
            named.append((str(item), read_image(Path(item)), False))
    return named


def as_digits(
    images: np.ndarray | str | Path | Sequence[np.ndarray | str | Path],
) -> tuple[np.ndarray, list[str]]:
    """28x28 digits for a model [N, 28, 28], and a warning for each image that seems to hold
    several digits side by side.

    `images`: as `named_images` takes them. Arrays of 28x28 on a dark ground are digits as
    MNIST has them and go as they are; every other image (a 28x28 drawing dark on light
    among them), and every file, is converted as `digits predict` converts a file
    (`convert`).
    """
    digits, notes = [], []
    for name, image, array in named_images(images):
        if array and image.shape == IMAGE_SHAPE and not dark_on_light(image):
            digits.append(image)
            continue
        digit, count = convert(image, name)
        if warning := several_digits(count):
            notes.append(f"{name}: {warning}")
        digits.append(digit)
    return np.array(digits, np.float32).reshape(-1, *IMAGE_SHAPE), notes


def on_background(rgba: Image.Image) -> Image.Image:
    """The image laid on a background where it is transparent, so that its digit shows.

    Where the opaque pixels are few and of one shade, they are the strokes themselves (a
    digit drawn in an app and saved without paper), dark or light: the background is the
    opposite shade. Where they hold ink on a ground of their own (paper: a photo with
    rounded corners, a sheet cut out) or fill most of the picture, the background takes
    that ground's shade.
    """
    alpha = np.asarray(rgba.getchannel("A"))
    grey = np.asarray(rgba.convert("RGB").convert("L"))
    opaque = alpha >= 128
    shade = 255
    if opaque.any():
        values = grey[opaque]
        low, middle, high = np.percentile(values, [1, 50, 99])
        strokes_alone = opaque.mean() < 0.5 and high - low < 64
        shade = (255 if middle < 128 else 0) if strokes_alone else round(middle)
    canvas = Image.new("RGBA", rgba.size, (shade, shade, shade, 255))
    return Image.alpha_composite(canvas, rgba)


def _as_255(array: np.ndarray, sixteen_bit: bool = False) -> np.ndarray:
    """Grey levels of any depth on the 0..255 scale: floats in 0..1, 8-bit, 16-bit (as
    scanners write), or deeper, judged by the mode (`sixteen_bit`) or else the values."""
    top = float(array.max(initial=0))
    if sixteen_bit or 255 < top <= 65535:
        return array / 257
    if top > 65535:
        return array * (255 / top)
    return array * 255 if top <= 1.0 else array


def to_mnist(gray: np.ndarray, name: str = "image") -> np.ndarray:
    """Convert a grayscale photo, scan or array to an MNIST-style uint8 28x28 digit.

    A photographed sheet is cut from the table around it (`on_the_sheet`), the paper and its
    uneven lighting are taken away (`ink`; the picture smoothed first where faint strokes are
    lost among the paper's grain, `grainy`; the paper's level taken at the border where the
    strokes are too bold to model it around them, `bold`), grain and specks dropped and the
    digit found as its main strokes (`strokes`), a fine pen's strokes widened to MNIST's
    (`thicken`), then the MNIST steps: fitted into 20x20 keeping its aspect ratio, centred by
    centre of mass in 28x28.
    """
    return convert(gray, name)[0]


def convert(gray: np.ndarray, name: str = "image") -> tuple[np.ndarray, int]:
    """`to_mnist`'s digit, and how many digits the strokes stand for side by side
    (`side_by_side`): more than one, and the 28x28 image squeezes them all into one box."""
    amount, kept = digit_strokes(gray, name)
    return mnist_frame(crop(amount, kept)), side_by_side(kept)


def convert_number(gray: np.ndarray, name: str = "image") -> list[np.ndarray]:
    """The digits of a number written in a row, left to right, each converted as `to_mnist`
    converts a digit alone: the strokes are split where they stand apart (`in_a_row`).
    One digit is a number of one digit; marks under half the digits' height written apart
    from the digits (a dash, a decimal point) are left out, and digits that touch are read
    as one."""
    amount, kept = digit_strokes(gray, name)
    return [mnist_frame(crop(amount, part)) for part in in_a_row(kept, NUMBER_GAP) or [kept]]


def digit_strokes(gray: np.ndarray, name: str = "image") -> tuple[np.ndarray, np.ndarray]:
    """The ink map of a picture at working size, and where its digit's strokes are in it
    (`to_mnist`'s steps up to `strokes`).

    Raises:
        ImageError: a picture of one flat grey, of paper and its grain alone, with no
            strokes in it, or with a line alone (`flat`).
    """
    gray = np.asarray(gray, np.float64)  # uint8 sums and differences would wrap around
    if gray.size == 0 or gray.max() - gray.min() < 1:
        raise ImageError(f"{name}: empty image (no digit found)")
    gray = on_the_sheet(_at_most(native(gray), WORK_SIZE))
    # Each ink map's split into ink and paper (`inked`) is found once and serves each test.
    amount = ink(gray)
    mask = inked(amount)
    if grainy(amount, mask):
        amount = ink(ndimage.gaussian_filter(gray, GRAIN))
        mask = inked(amount)
        if grainy(amount, mask) and mask.mean() > GRAIN_ONLY:
            raise ImageError(f"{name}: empty image (no digit found, only the paper's grain)")
    if bold(mask):
        amount = ink(gray, flat=True)
        mask = inked(amount)
    kept = strokes(mask)
    if kept is None or flat(kept):
        raise ImageError(f"{name}: empty image (no digit found)")
    return amount, kept


def native(gray: np.ndarray) -> np.ndarray:
    """`gray` at the size it was drawn where it is an exact nearest-neighbour enlargement
    (every k x k block of one value: a small digit zoomed by repeating its pixels), nothing
    lost; else `gray`. Blocks k pixels wide would be measured as strokes that wide, and the
    paper's level modelled around them as if they were (`ink`)."""
    h, w = gray.shape
    if min(h, w) < 2 * NATIVE:
        return gray
    repeated = np.array_equal(gray[0], gray[1]) and np.array_equal(gray[:, 0], gray[:, 1])
    if not repeated:  # a photo's or a scan's neighbouring rows never match exactly
        return gray
    for k in range(min(h, w) // NATIVE, 1, -1):  # the largest factor first
        if h % k == 0 and w % k == 0:
            blocks = gray.reshape(h // k, k, w // k, k)
            if (blocks == blocks[:, :1, :, :1]).all():
                return gray[::k, ::k]
    return gray


def mnist_frame(digit: np.ndarray) -> np.ndarray:
    """A digit's crop (0..1) the MNIST way: a fine pen's strokes widened (`thicken`),
    fitted into 20x20 keeping its aspect ratio, centred by centre of mass in 28x28 (uint8)."""
    digit = thicken(digit)
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


def on_the_sheet(gray: np.ndarray) -> np.ndarray:
    """`gray` cut to the sheet of paper it shows lying on a darker table, the table around
    the sheet painted the nearest paper's grey; `gray` itself where there is no such sheet
    (`find_sheet`). Without this, the table reads as the ground and the whole sheet as one
    light stroke.

    The sheet is looked for above Otsu's threshold, then, where a shadow across the sheet
    fell below it, above the midpoint between it and the picture's border (the table).
    """
    level = 255 * otsu(gray / 255)
    table = np.median(_border(gray))
    sheet = find_sheet(gray, level)
    if sheet is None and table < level:
        sheet = find_sheet(gray, (level + table) / 2)
    if sheet is None:
        return gray
    # Painted over the sheet's edge too, which the lens and JPEG blur.
    inner = ndimage.binary_erosion(sheet, iterations=max(2, max(gray.shape) // 50))
    if not inner.any():
        return gray
    nearest = ndimage.distance_transform_edt(~inner, return_distances=False, return_indices=True)
    return gray[tuple(nearest)][_box(sheet)]


def find_sheet(gray: np.ndarray, threshold: float) -> np.ndarray | None:
    """The mask of a sheet of paper on a darker table in `gray`, or None.

    The sheet is the largest region brighter than `threshold`, closed over thin dark lines
    and strokes, its holes filled. It is taken for a sheet on a table only if it covers
    `SHEET` to 98% of the picture, is nearly convex (a quadrilateral seen at any angle is),
    is mostly bright, its dark in thin strokes (a light 0 on a dark ground has a wide hole),
    or has no dark at all where it is a blank sheet (`BLANK_SHEET` wide, the table all
    round, in a `PHOTO`: a light 1 on a dark ground is none of these), and ends in an edge:
    all along it, the paper just inside stands clear above the table just outside (`EDGE`).
    Where a shadow or a gradient ends the bright part of a page, the grey on both sides of
    the threshold is alike.
    """
    bright = gray > threshold
    k = max(1, max(gray.shape) // 100)
    # Padded as the picture continues, so the closing does not eat into its border.
    closed = ndimage.binary_closing(np.pad(bright, k, mode="edge"), iterations=k)[k:-k, k:-k]
    labels, count = ndimage.label(closed)
    if not count:
        return None
    sheet = labels == 1 + np.argmax(ndimage.sum(closed, labels, range(1, count + 1)))
    sheet = ndimage.binary_fill_holes(sheet)
    dark = sheet & ~bright
    if not (SHEET <= sheet.mean() <= 0.98 and dark.sum() <= 0.2 * sheet.sum()):
        return None
    if dark.sum() < 20:
        # Nothing written on it: a blank sheet, in a photo (a thumbnail's strokes are blobs),
        # with the table on every side and as wide as sheets are. A light digit on a dark
        # ground has no dark inside either, but no stroke is that wide, and a digit cropped
        # tight (a bold 1) touches the picture's border.
        wide = 2 * ndimage.distance_transform_edt(sheet).max() >= BLANK_SHEET * min(gray.shape)
        if min(gray.shape) < PHOTO or not wide or _border(sheet).any():
            return None
    else:
        # Dark on a sheet is ink: strokes, thin beside the sheet and long beside their
        # width (area over width squared). Inside a light digit on a dark ground it is the
        # holes of a 0, 6, 8 or 9: round, and a fifth of the digit's size.
        width = stroke_width(dark)
        if width > 0.13 * np.sqrt(sheet.sum()) or dark.sum() < 5 * width**2:
            return None
    corners = np.argwhere(sheet ^ ndimage.binary_erosion(sheet))
    if sheet.sum() < 0.9 * ConvexHull(corners).volume:  # a hull's "volume" in 2-D: its area
        return None
    # Just inside the sheet's edge (not the picture's) the grey must stand clear above what
    # lies just outside it, a few pixels beyond the blur on either side.
    depth, reach = ndimage.distance_transform_edt(sheet), ndimage.distance_transform_edt(~sheet)
    near = (depth > k + 1) & (depth <= 3 * k + 3) & bright
    beyond = (reach > k + 1) & (reach <= 3 * k + 3)
    if not near.any() or not beyond.any():
        return None
    smooth = ndimage.gaussian_filter(gray, 1.5)
    gap = np.percentile(smooth[near], 10) - np.percentile(smooth[beyond], 90)
    if gap < EDGE * (np.median(gray[sheet & bright]) - np.median(gray[~sheet])):
        return None
    return sheet


def ink(gray: np.ndarray, flat: bool = False) -> np.ndarray:
    """How much ink each pixel holds, 0..1, light on dark like MNIST, the background gone.

    The paper's level is estimated everywhere at once, so a brightness gradient or a shadow
    across the page does not read as ink: a grey closing (for dark ink on light paper; an
    opening for light on dark) wider than any stroke wipes the strokes out of the image, a
    blur smooths what is left, and the ink is what the image differs from it by. `flat`:
    the paper's level is one, the border's (for strokes as wide as the window, `bold`).
    """
    dark_ink = dark_on_light(gray)
    width = _window(gray.shape)
    if flat:
        level = np.median(_border(gray))
        difference = level - gray if dark_ink else gray - level
    elif dark_ink:
        background = ndimage.grey_closing(gray, size=width)
        difference = ndimage.uniform_filter(background, width) - gray
    else:
        background = ndimage.grey_opening(gray, size=width)
        difference = gray - ndimage.uniform_filter(background, width)
    difference = np.clip(difference, 0, None)
    top = np.percentile(difference, 99.9)
    return np.clip(difference / top, 0, 1) if top > 0 else difference


def dark_on_light(gray: np.ndarray) -> bool:
    """Whether `gray` holds dark ink on a light ground: its border (the paper) lighter than
    most of it, or than the middle of its range."""
    border = np.median(_border(gray))
    return bool(border > np.median(gray) or border > (gray.min() + gray.max()) / 2)


def _window(shape: tuple[int, ...]) -> int:
    """The width of the window `ink` models the paper's level through."""
    return max(3, min(shape) // 4)


def bold(mask: np.ndarray) -> bool:
    """Whether the strokes where an ink map holds ink (`inked`) are `BOLD` of `ink`'s window
    wide or more: the window took part of them for paper."""
    return bool(mask.any()) and stroke_width(mask) >= BOLD * _window(mask.shape)


def inked(amount: np.ndarray) -> np.ndarray:
    """Where an ink map holds ink: above Otsu's split from the paper, and above `INK`."""
    return amount > max(otsu(amount), INK)


def grainy(amount: np.ndarray, mask: np.ndarray) -> bool:
    """Whether the ink map's split into ink and paper (`mask`, its `inked`) stands less than
    `SEPARATION` spreads of the paper's grain apart: faint strokes, lost among the grain."""
    if mask.all() or not mask.any():
        return False
    paper = amount[~mask]
    spread = 1.4826 * np.median(np.abs(paper - np.median(paper)))
    return bool(np.median(amount[mask]) - np.median(paper) < SEPARATION * spread)


def strokes(mask: np.ndarray) -> np.ndarray | None:
    """Where the digit's strokes are among an ink map's ink (`mask`, its `inked`), or None
    where there is no digit (nothing, or specks: `SPECK`).

    Ink is what stands above the grain (Otsu's threshold between the two); the digit is the
    largest connected stroke and those at least `KEEP` of its size (a 5's detached bar), so
    specks are dropped, and so are ruled lines and a page's edge (`drop_lines`). Pixels that
    touch at a corner are connected: a fine pen's diagonal is a chain of such pixels.
    """
    mask = drop_lines(mask)
    labels, count = ndimage.label(mask, structure=np.ones((3, 3)))
    if not count:
        return None
    sizes = ndimage.sum(mask, labels, range(1, count + 1))
    rows, cols = ndimage.find_objects(labels)[int(np.argmax(sizes))]
    if max(rows.stop - rows.start, cols.stop - cols.start) < SPECK * max(mask.shape):
        return None
    return np.isin(labels, np.flatnonzero(sizes >= KEEP * sizes.max()) + 1)


def flat(mask: np.ndarray) -> bool:
    """Whether the strokes of a non-empty `mask` lie flat: four times as wide as tall or more,
    and no taller than two of their widths. A dash, or a ruled page's line with nothing
    written on it; never a digit (MNIST's stand 7-10 of their widths tall, a marker's 4-6)
    nor a row of them (as tall as a digit)."""
    rows, cols = (np.flatnonzero(mask.any(axis=a)) for a in (1, 0))
    tall, wide = rows[-1] + 1 - rows[0], cols[-1] + 1 - cols[0]
    return bool(4 * tall <= wide and tall <= 2 * stroke_width(mask))


def crop(amount: np.ndarray, kept: np.ndarray) -> np.ndarray:
    """The ink of the strokes `kept` (and a pixel around them), cropped to them and scaled
    so that they stand at full strength, as MNIST's do: pen pressure and lighting vary."""
    digit = ndimage.binary_dilation(kept, iterations=1)
    cropped = (amount * digit)[_box(digit)]
    core = cropped[cropped > INK]
    return np.clip(cropped / np.percentile(core, 90), 0, 1) if core.size else cropped


def side_by_side(mask: np.ndarray) -> int:
    """How many digits the strokes in `mask` stand for in a row (`in_a_row`)."""
    return len(in_a_row(mask))


def in_a_row(mask: np.ndarray, gap: float = GAP) -> list[np.ndarray]:
    """The strokes of `mask` split into the digits they stand for in a row, left to right
    (a mask for each).

    Strokes are one digit's where their columns overlap (a 5's bar lies over its body, a 4's
    strokes cross), where they nearly touch (less than `gap` of their height apart), and
    where they share too few rows to stand side by side (a fine pen's slanted stroke broken
    in two); a digit is a group at least half as tall as all the strokes together (a dash
    beside a digit is not one).
    """
    rows = np.flatnonzero(mask.any(axis=1))
    if not len(rows):
        return []
    height = rows[-1] + 1 - rows[0]
    bridged = ndimage.binary_dilation(mask, iterations=max(1, round(BRIDGE * height)))
    labels, _ = ndimage.label(bridged, structure=np.ones((3, 3)))
    boxes = sorted(
        (c.start, c.stop, r.start, r.stop, label)
        for label, (r, c) in enumerate(ndimage.find_objects(labels), 1)
    )
    groups: list[tuple[list[int], list[int]]] = []  # labels; left, right, top, bottom
    for left, right, top, bottom, label in boxes:
        if groups:
            ids, g = groups[-1]
            shared = min(g[3], bottom) - max(g[2], top)
            apart = left - g[1] >= gap * height and shared >= min(g[3] - g[2], bottom - top) / 2
            if not apart:
                g[:] = [g[0], max(g[1], right), min(g[2], top), max(g[3], bottom)]
                ids.append(label)
                continue
        groups.append(([label], [left, right, top, bottom]))
    return [
        mask & np.isin(labels, ids)
        for ids, (_, _, top, bottom) in groups
        if bottom - top >= height / 2
    ]


def thicken(digit: np.ndarray) -> np.ndarray:
    """`digit` (a crop, 0..1) with its strokes widened to MNIST's median share of its longer
    side (`STROKE`) where they are far thinner than any of MNIST's (`THIN`): a ballpoint
    digit photographed large."""
    mask = digit > 0.5
    if not mask.any():
        return digit
    longer = max(digit.shape)
    width = stroke_width(mask)
    if width >= THIN * longer:
        return digit
    grow = (STROKE * longer - width) / 2
    pad = int(np.ceil(grow))
    mask = np.pad(mask, pad)
    grown = ndimage.distance_transform_edt(~mask) <= grow
    return np.maximum(np.pad(digit, pad), grown)


def stroke_width(mask: np.ndarray) -> float:
    """About how wide the strokes of a non-empty `mask` are, in pixels: twice the 90th
    percentile of their pixels' distance to the nearest background pixel."""
    return float(2 * np.percentile(ndimage.distance_transform_edt(mask)[mask], 90))


def drop_lines(mask: np.ndarray) -> np.ndarray:
    """`mask` without straight lines across the whole image thinner than the strokes.

    A ruled line or the page's edge runs from side to side and is thinner than a pen's
    stroke; a digit's own bar (a tightly cropped 7's) is as thick as its other strokes, so it
    stays. Where the digit crossed the line it loses the line's few rows.
    """
    if not mask.any():
        return mask
    stroke = stroke_width(mask)
    h, w = mask.shape
    out = mask.copy()
    for length, axis in ((w, 1), (h, 0)):
        along = (0, 1) if axis == 1 else (1, 0)  # a row's direction, or a column's
        # Bridged over the gaps grain and JPEG leave in a printed line, then kept where a
        # straight run crosses nine tenths of the image.
        # Padded as the picture continues, so the closing does not eat the lines' ends.
        padded = np.pad(mask, 3, mode="edge")
        bridged = ndimage.binary_closing(padded, np.ones([1 + 6 * a for a in along]))[3:-3, 3:-3]
        lines, _ = ndimage.label(runs(bridged, 1 + round(0.9 * length - 1), axis))
        for i, found in enumerate(ndimage.find_objects(lines), 1):
            thickness = (lines[found] == i).sum() / (found[axis].stop - found[axis].start)
            if thickness < 0.6 * stroke:
                out[(lines == i) & mask] = False
    # Where the digit crossed a line, its stroke continues on both sides: those pixels are
    # given back, or squared paper would cut the digit into pieces too small to keep.
    span = 2 * round(stroke / 2) + 3  # odd: centred on the pixel it judges
    across = ndimage.binary_closing(out, np.ones((span, 1))) | ndimage.binary_closing(
        out, np.ones((1, span))
    )
    return out | (mask & across)


def runs(mask: np.ndarray, length: int, axis: int) -> np.ndarray:
    """The pixels of `mask` in straight runs of `length` or more along `axis` (1: rows, 0:
    columns): `mask` opened by a line that long, found from where runs start and end
    (`ndimage.binary_opening` costs time in proportion to the line's length)."""
    m = mask if axis == 1 else mask.T
    edges = np.diff(np.pad(m, ((0, 0), (1, 1))).astype(np.int8), axis=1)
    starts, ends = np.argwhere(edges == 1), np.argwhere(edges == -1)  # in step, row by row
    out = np.zeros_like(m)
    long = ends[:, 1] - starts[:, 1] >= length
    for (row, start), (_, end) in zip(starts[long], ends[long], strict=True):
        out[row, start:end] = True
    return out if axis == 1 else out.T


def otsu(values: np.ndarray) -> float:
    """The threshold that best splits `values` (0..1) in two (Otsu, 1979)."""
    counts, edges = np.histogram(values, bins=128, range=(0, 1))
    centres = (edges[:-1] + edges[1:]) / 2
    weight = np.cumsum(counts)
    mean = np.cumsum(counts * centres)
    total, grand = weight[-1], mean[-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (grand * weight - total * mean) ** 2 / (weight * (total - weight))
    return float(centres[np.nanargmax(between)]) if np.isfinite(between).any() else 0.5


def _at_most(gray: np.ndarray, size: int) -> np.ndarray:
    """`gray` shrunk so its longer side is at most `size` pixels (a 12-megapixel photo needs
    no more for a 28x28 digit, and the filters above cost by the pixel)."""
    scale = size / max(gray.shape)
    if scale >= 1:
        return gray
    shape = (max(1, round(gray.shape[1] * scale)), max(1, round(gray.shape[0] * scale)))
    return np.asarray(Image.fromarray(gray.astype(np.float32)).resize(shape, Image.Resampling.BOX))


def _border(gray: np.ndarray) -> np.ndarray:
    """The pixels along the four edges of `gray`."""
    return np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])


def _box(mask: np.ndarray) -> tuple[slice, slice]:
    """The bounding box of a non-empty `mask`, as slices to index with."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


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
        if not found:
            raise StudyError(
                f"{root}: no exported model here; make one (`digits run --preset quick`, or "
                "`digits export`) or pick one with --model"
            )
        if len(found) > 1:
            listed = ", ".join(str(p) for p in found)
            raise StudyError(f"{root}: {len(found)} models here ({listed}): pick one with --model")
        path = found[0]
    file = path / "model.keras" if path.is_dir() else path
    if not file.is_file():
        raise StudyError(f"{file}: no such model; export one with `digits export`")
    return file


def load_model(file: Path) -> Any:
    """The Keras model in `file`, checked to take [N, 28, 28] digits as exports do.

    Raises:
        StudyError: the file is no Keras model (damaged, truncated, another format) or not
            a digit model.
    """
    if file.suffix == ".keras" and not zipfile.is_zipfile(file):
        raise StudyError(f"{file}: damaged or not a Keras model (a .keras file is a zip archive)")
    quiet_tensorflow()
    import keras

    try:
        model = keras.saving.load_model(file)
    except Exception as e:  # Keras raises many kinds for a file that is not its own
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise StudyError(f"{file}: not a model Keras can load ({reason})") from None
    shape = tuple(getattr(model, "input_shape", ()))[1:]
    if shape != IMAGE_SHAPE:
        raise StudyError(f"{file}: takes inputs of shape {shape}, not digits of {IMAGE_SHAPE}")
    return model


def classify(
    model_file: Path, files: list[Path], number: bool = False
) -> tuple[list[Prediction] | list[Number], list[dict[str, str]]]:
    """Predictions for the readable files (with `number`, each file read as a number,
    `convert_number`), and for each unreadable one a record of the file and what is wrong
    with it (`{"file": ..., "error": ...}`). A folder stands for the images in it
    (`images_in`): `digits predict photos/` classifies every photo there."""
    converted: list[tuple[str, list[np.ndarray], int]] = []  # file, its digits, side by side
    errors: list[dict[str, str]] = []
    expanded: list[Path] = []
    for path in files:
        found = images_in(path) if path.is_dir() else [path]
        if not found:
            errors.append({"file": str(path), "error": "no image files in this folder"})
        expanded += found
    for f in expanded:
        try:
            gray = read_image(f)
            if number:
                converted.append((str(f), convert_number(gray, str(f)), 1))
            else:
                digit, count = convert(gray, str(f))
                converted.append((str(f), [digit], count))
        except ImageError as e:
            errors.append({"file": str(f), "error": str(e).removeprefix(f"{f}: ")})
    if not converted:
        return [], errors
    numbers = read(load_model(model_file), [(name, digits) for name, digits, _ in converted])
    if number:
        return numbers, errors
    counts = [count for _, _, count in converted]
    return [
        replace(n.digits[0], side_by_side=c) for n, c in zip(numbers, counts, strict=True)
    ], errors


def read(model: Any, numbers: list[tuple[str, list[np.ndarray]]]) -> list[Number]:
    """Each (name, its 28x28 digits) classified by a loaded `model`, in one batch."""
    probs = iter(model.predict(np.stack([d for _, ds in numbers for d in ds]), verbose=0))
    return [Number(name, [reading(name, d, next(probs)) for d in ds]) for name, ds in numbers]


def reading(name: str, image: np.ndarray, probs: np.ndarray) -> Prediction:
    """The prediction for one digit from the model's probabilities."""
    top = np.argsort(-probs)[:3]
    top3 = [(int(d), float(probs[d])) for d in top]
    return Prediction(name, top3[0][0], top3[0][1], top3, image)


def show(predictions: list[Prediction] | list[Number], folder: Path) -> list[Path]:
    """Write the 28x28 image the model saw for each prediction (a number's digits side by
    side) into `folder`, as `<file's stem>.png` (numbered where two files share a stem);
    returns the paths."""
    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for p in predictions:
        path = folder / f"{Path(p.file).stem}.png"
        n = 1
        while path in written:
            path, n = folder / f"{Path(p.file).stem}-{n}.png", n + 1
        with atomic_path(path) as tmp:  # a rerun killed mid-write keeps the old picture
            Image.fromarray(p.image).save(tmp)
        written.append(path)
    return written
