"""`digits predict` on digits as people photograph and scan them: accuracy per condition.

    python benchmarks/photos.py --model best_models/quick [--images 500] [--seed 0]

Renders the first `--images` MNIST test digits (which no model here trained on) as image files
under several conditions, then classifies each file the way `digits predict` does (read,
convert to a 28x28 MNIST digit, the exported model) and reports the accuracy per condition
beside the same digits clean (light on black, as MNIST has them, enlarged), and how often
`digits predict` would warn that a file holds several digits side by side, how often
`digits predict --number` would read it as a number of several digits, and how often it finds
no digit (each holds one; then pairs of them in one file, each of which should be warned of
and read as a number of two, as MNIST spaces them and written close; and blank pages, in
which no digit should be found), and how long a conversion takes:

- scan: dark ink on light grey paper with grain, the digit at a random place and size on the
  page, strokes thinner or thicker; grey PNG;
- scan, colour: the same on tinted paper in coloured ink, JPEG quality 90;
- scan, fine pen: the digit large (200-400 px) and traced by a pen 1-3 px wide;
- scan, pencil: faint strokes, 10-30 grey levels below the paper, in grain of 2-5 levels;
- photo: a brightness gradient and a soft shadow across the page, rotation up to 10 degrees,
  off-centre, JPEG quality 50-90, colour;
- photo, ruled: a photo on ruled paper (a line across the page under the digit);
- photo, squared: a photo on squared paper (light lines every 14-23 px both ways, across
  the digit);
- photo, on a table: the photographed sheet tilted on a darker table that surrounds it;
- photo, marker: a digit in strokes a sixth to a quarter of its size wide, cropped tight
  (filling the picture but for a thin margin), lit as the photos are.

Then digits by other writers than MNIST's: the UCI handwritten digits (scikit-learn's copy,
1,797 digits of 8x8 pixels in 17 grey levels, bold strokes filling the frame), as they are and
enlarged to 32x32.

Replaces the `photos` section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from scipy import ndimage
from sklearn.datasets import load_digits
from throughput import hardware, update_benchmarks

from search import data
from search.predict import ImageError, convert, convert_number, read, read_image

PAGE = 160  # pixels a side of a rendered page


def strokes(digit: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The digit as ink coverage 0..1 at a random size (60-130 px tall; a row of digits
    keeps its width) and stroke width."""
    size = int(rng.integers(60, 131))
    wide = size * digit.shape[1] // digit.shape[0]
    big = np.asarray(Image.fromarray(digit).resize((wide, size), Image.Resampling.BILINEAR))
    ink = big / 255.0
    width = rng.choice(["thin", "as is", "thick"])
    k = max(1, size // 30)
    if width == "thin":
        ink = ndimage.grey_erosion(ink, size=k)
    elif width == "thick":
        ink = ndimage.grey_dilation(ink, size=k)
    return np.clip(ink, 0, 1)


def place(ink: np.ndarray, rng: np.random.Generator, centred: bool) -> np.ndarray:
    """`ink` on an empty page, in the middle or anywhere it fits (a page as much wider as a
    row of digits is)."""
    room = PAGE - ink.shape[0]
    page = np.zeros((PAGE, ink.shape[1] + room))
    top, left = (room // 2, room // 2) if centred else rng.integers(0, room + 1, 2)
    page[top : top + ink.shape[0], left : left + ink.shape[1]] = ink
    return page


def paper(ink: np.ndarray, rng: np.random.Generator, lighting: np.ndarray | None) -> np.ndarray:
    """Dark ink on light paper, with grain, under `lighting` (a field of factors)."""
    level, ink_level = rng.uniform(190, 240), rng.uniform(15, 70)
    page = level * (1 - ink) + ink_level * ink
    if lighting is not None:
        page = page * lighting
    return np.clip(page + rng.normal(0, rng.uniform(3, 9), page.shape), 0, 255)


def lighting(rng: np.random.Generator, shape: tuple[int, int] = (PAGE, PAGE)) -> np.ndarray:
    """A brightness gradient (to 0.6-0.85 at one side) and a soft shadow over part of it."""
    ys, xs = np.mgrid[0 : shape[0], 0 : shape[1]] / np.array(shape)[:, None, None]
    angle = rng.uniform(0, 2 * np.pi)
    along = np.cos(angle) * xs + np.sin(angle) * ys
    along = (along - along.min()) / (along.max() - along.min())
    field = 1 - rng.uniform(0.15, 0.4) * along
    edge = rng.uniform(0.2, 0.8)
    shadow = ndimage.gaussian_filter((xs < edge).astype(float), PAGE / 12)
    return field * (1 - rng.uniform(0.2, 0.4) * shadow)


def colour(page: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A grey page as RGB: tinted paper, and ink of a colour (blue, black, red)."""
    tint = rng.uniform(0.85, 1.0, 3)
    return np.clip(page[..., None] * tint, 0, 255)


def save(image: np.ndarray, path: Path, quality: int | None = None) -> Path:
    im = Image.fromarray(image.astype(np.uint8))
    if quality is None:
        im.save(path.with_suffix(".png"))
        return path.with_suffix(".png")
    im.convert("RGB").save(path.with_suffix(".jpg"), quality=quality)
    return path.with_suffix(".jpg")


def clean(digit: np.ndarray, rng: np.random.Generator | None, path: Path) -> Path:
    """Light on black as MNIST has it, 4x (a row of digits keeps its width)."""
    big = Image.fromarray(digit).resize((4 * digit.shape[1], 112), Image.Resampling.BILINEAR)
    return save(np.asarray(big), path)


def scan(digit: np.ndarray, rng: np.random.Generator, path: Path) -> Path:
    return save(paper(place(strokes(digit, rng), rng, centred=False), rng, None), path)


def pencil(digit: np.ndarray, rng: np.random.Generator, path: Path) -> Path:
    """Faint strokes, as a hard pencil or a light scan leaves them: 10-30 grey levels below
    the paper, whose grain spreads 2-5 levels."""
    ink = place(strokes(digit, rng), rng, centred=False)
    page = rng.uniform(190, 240) - rng.uniform(10, 30) * ink
    return save(np.clip(page + rng.normal(0, rng.uniform(2, 5), page.shape), 0, 255), path)


def scan_colour(digit: np.ndarray, rng: np.random.Generator, path: Path) -> Path:
    page = paper(place(strokes(digit, rng), rng, centred=False), rng, None)
    return save(colour(page, rng), path, quality=90)


def fine_pen(digit: np.ndarray, rng: np.random.Generator, path: Path) -> Path:
    """The digit 200-400 px tall traced by a pen 1-3 px wide (its strokes' centre lines), as a
    ballpoint digit photographed close up or scanned at high resolution."""
    size = int(rng.integers(200, 401))
    body = np.asarray(Image.fromarray(digit).resize((size, size), Image.Resampling.BILINEAR)) > 127
    depth = ndimage.distance_transform_edt(body)
    centre = body & (depth >= ndimage.maximum_filter(depth, size=3) - 0.5)
    ink = ndimage.distance_transform_edt(~centre) <= rng.uniform(0.5, 1.5)
    return save(paper(np.pad(ink.astype(float), 20), rng, None), path)


def photo(
    digit: np.ndarray, rng: np.random.Generator, path: Path, lines: str | None = None
) -> Path:
    ink = place(strokes(digit, rng), rng, centred=False)
    ink = ndimage.rotate(ink, rng.uniform(-10, 10), reshape=False, order=1)
    if lines == "ruled":  # a printed line across the page, below the digit's middle
        row = int(rng.integers(PAGE // 2, PAGE - 10))
        ink[row : row + 2, :] = np.maximum(ink[row : row + 2, :], 0.5)
    if lines == "squared":  # light printed lines both ways, crossing the digit
        step, strength = int(rng.integers(14, 24)), rng.uniform(0.2, 0.35)
        first = int(rng.integers(step))
        ink[first::step, :] = np.maximum(ink[first::step, :], strength)
        ink[:, first::step] = np.maximum(ink[:, first::step], strength)
    page = paper(np.clip(ink, 0, 1), rng, lighting(rng, ink.shape))
    return save(colour(page, rng), path, quality=int(rng.integers(50, 91)))


def marker(digit: np.ndarray, rng: np.random.Generator, path: Path) -> Path:
    """A digit drawn with a marker and photographed close, cropped tight: strokes 8-15 px
    wider than MNIST's at 140 px (about a sixth to a quarter of the digit), filling the
    picture but for a 10 px margin, under `photo`'s lighting, JPEG 50-90."""
    box = np.asarray(
        Image.fromarray(digit[3:25, 3:25]).resize((140, 140), Image.Resampling.BILINEAR)
    )
    ink = ndimage.grey_dilation(box / 255, size=int(rng.integers(8, 16)))
    page = paper(np.pad(np.clip(ink, 0, 1), 10), rng, lighting(rng))
    return save(colour(page, rng), path, quality=int(rng.integers(50, 91)))


def on_table(digit: np.ndarray, rng: np.random.Generator, path: Path) -> Path:
    """A photo of the sheet lying on a table darker than its darkest part: the page lit as
    `photo`'s and tilted, the table around it on every side (a third to a half of the
    picture), as a phone held above a desk sees it."""
    page = paper(place(strokes(digit, rng), rng, centred=False), rng, lighting(rng))
    margin = int(rng.integers(PAGE // 8, PAGE // 4))
    table = rng.uniform(0.25, 0.6) * np.percentile(ndimage.uniform_filter(page, 15), 1)
    sheet = np.pad(page, margin, constant_values=-1.0)  # -1: not the sheet
    sheet = ndimage.rotate(sheet, rng.uniform(-15, 15), reshape=False, order=0, cval=-1.0)
    grain = rng.normal(0, 6, sheet.shape)
    picture = np.where(sheet < 0, table + grain, sheet)
    return save(colour(np.clip(picture, 0, 255), rng), path, quality=int(rng.integers(50, 91)))


CONDITIONS: dict[str, Callable[[np.ndarray, np.random.Generator, Path], Path]] = {
    "clean (light on black, enlarged)": clean,
    "scan: dark ink on grey paper, grain, any place, size and stroke": scan,
    "scan, colour: tinted paper, coloured ink, JPEG 90": scan_colour,
    "scan, fine pen: strokes 1-3 px wide, the digit 200-400 px tall": fine_pen,
    "scan, pencil: strokes 10-30 grey levels below the paper, grain 2-5": pencil,
    "photo: gradient, shadow, rotation, JPEG 50-90, colour": photo,
    "photo, ruled: the same on ruled paper": lambda d, r, p: photo(d, r, p, "ruled"),
    "photo, squared: the same on squared paper": lambda d, r, p: photo(d, r, p, "squared"),
    "photo, on a table: the sheet tilted on a darker surface, JPEG 50-90": on_table,
    "photo, marker: bold strokes cropped tight, gradient, shadow, JPEG 50-90": marker,
}
BLANK = np.zeros((28, 28), np.uint8)  # no digit: each condition's paper, lighting and grain
BLANKS = 100  # blank pages rendered in each condition


def attempt(conversion: Callable[[np.ndarray], Any], grey: np.ndarray) -> Any:
    """What `conversion` makes of a picture, or None where it finds no digit in it."""
    try:
        return conversion(grey)
    except ImageError:
        return None


# Pairs of digits read as numbers, in three of those conditions (by the start of their names).
NUMBERS = {"clean": "clean (", "scanned": "scan:", "photographed": "photo:"}


def close(a: np.ndarray, b: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Two digits written close: their ink 10-30% of the digits' height apart (MNIST's
    margins leave them 30-60% apart), with MNIST's margin at either end."""
    inked = [np.flatnonzero(d.max(axis=0) > 0) for d in (a, b)]
    a, b = (d[:, cols[0] : cols[-1] + 1] for d, cols in zip((a, b), inked, strict=True))
    rows = np.flatnonzero((a.max(axis=1) > 0) | (b.max(axis=1) > 0))
    gap = np.zeros((28, max(1, round(rng.uniform(0.1, 0.3) * (rows[-1] + 1 - rows[0])))))
    margin = np.zeros((28, 4))
    return np.concatenate([margin, a, gap, b, margin], axis=1).astype(np.uint8)


SPACINGS = {
    "as MNIST spaces them (its margins)": lambda a, b, rng: np.concatenate([a, b], axis=1),
    "written close (10-30% of their height apart)": close,
}


def made_by(file: Path) -> str:
    """What the model is, from its export's metadata.json, if it has one."""
    meta = file.parent / "metadata.json"
    if not meta.exists():
        return ""
    m = json.loads(meta.read_text())
    accuracy = m["evaluation"]["ensemble"]["test_accuracy"]
    return f"The model: the export of `{m['command']}` ({accuracy:.2%} on the test set as arrays)."


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="an export or a .keras file")
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    import keras

    from search.predict import find_model

    file = find_model(args.model, args.model)
    model = keras.saving.load_model(file)
    d = data.load()
    x, y = d.x_test[: args.images], d.y_test[: args.images]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, render in CONDITIONS.items():
            rng = np.random.default_rng(args.seed)
            files = [render(x[i], rng, Path(tmp) / f"{i}") for i in range(len(y))]
            grey = [read_image(f) for f in files]
            began = time.perf_counter()
            converted = [attempt(convert, g) for g in grey]
            ms = 1000 * (time.perf_counter() - began) / len(grey)
            found = [i for i, c in enumerate(converted) if c is not None]
            digits = np.stack([converted[i][0] for i in found])
            right = (model.predict(digits, verbose=0).argmax(axis=1) == y[found]).sum() / len(y)
            several = np.mean([c is not None and c[1] > 1 for c in converted])
            split = np.mean([len(attempt(convert_number, g) or []) > 1 for g in grey])
            blanks = [render(BLANK, rng, Path(tmp) / f"blank{i}") for i in range(BLANKS)]
            empty = np.mean([attempt(convert, read_image(f)) is None for f in blanks])
            rows.append((name, right, several, split, 1 - len(found) / len(y), empty, ms))
        # Each pair of consecutive digits side by side in one file, as a number is written:
        # every one should be warned of.
        pairs = [
            clean(np.concatenate([x[i], x[i + 1]], axis=1), None, Path(tmp) / f"pair{i}")
            for i in range(0, len(y) - 1, 2)
        ]
        warned = np.mean([convert(read_image(f), str(f))[1] > 1 for f in pairs])
        # The same pairs read as numbers, clean, scanned and photographed, as MNIST spaces
        # them and written close: both digits right.
        truth = [f"{y[i]}{y[i + 1]}" for i in range(0, len(y) - 1, 2)]
        numbers = {}
        for spacing, join in SPACINGS.items():
            for name, start in NUMBERS.items():
                (render,) = [r for c, r in CONDITIONS.items() if c.startswith(start)]
                rng = np.random.default_rng(args.seed)
                files = [
                    render(join(x[i], x[i + 1], rng), rng, Path(tmp) / f"n{i}")
                    for i in range(0, len(y) - 1, 2)
                ]
                numbers[spacing, name] = np.mean(
                    [
                        n.text == t
                        for n, t in zip(
                            read(model, [(str(f), convert_number(read_image(f))) for f in files]),
                            truth,
                            strict=True,
                        )
                    ]
                )
        for name, start in NUMBERS.items():
            (alone,) = [acc for c, acc, *_ in rows if c.startswith(start)]
            numbers["each digit read alone, its accuracy squared", name] = alone**2
    uci = load_digits()
    other = {}
    nearest, bilinear = Image.Resampling.NEAREST, Image.Resampling.BILINEAR
    for size, resample in ((8, nearest), (32, bilinear), (64, nearest)):
        images = [
            Image.fromarray((image * 255 / 16).astype(np.float32)).resize((size, size), resample)
            for image in uci.images
        ]
        digits = np.stack([convert(np.asarray(im, np.float64))[0] for im in images])
        other[size] = (model.predict(digits, verbose=0).argmax(axis=1) == uci.target).mean()
    base = rows[0][1]
    text = "\n".join(
        [
            f"`python benchmarks/photos.py --model {args.model} --images {args.images}` on "
            f"{hardware()}, {time.strftime('%Y-%m-%d')}: the first {args.images} MNIST test "
            f"digits rendered as files. {made_by(file)}",
            "",
            "| condition | accuracy | against clean | warned of digits side by side | "
            f"read with `--number` as two digits or more | no digit found | {BLANKS} blank "
            "pages: no digit found | conversion, ms a picture |",
            "|---|---|---|---|---|---|---|---|",
            *(
                f"| {name} | {acc:.1%} | {100 * (acc - base):+.1f} points | {several:.1%} | "
                f"{split:.1%} | {refused:.1%} | {empty:.0%} | {ms:.0f} |"
                for name, acc, several, split, refused, empty, ms in rows
            ),
            "",
            f"Consecutive pairs of these digits side by side in one file, clean: "
            f"{warned:.1%} of {len(pairs)} warned of. The same pairs read as numbers "
            f"(`digits predict --number`), both digits right:",
            "",
            f"| pairs | {' | '.join(NUMBERS)} |",
            "|---|---|---|---|",
            *(
                f"| {spacing} | "
                + " | ".join(f"{numbers[spacing, name]:.1%}" for name in NUMBERS)
                + " |"
                for spacing in dict.fromkeys(s for s, _ in numbers)
            ),
            "",
            f"Other writers: the {len(uci.target):,} UCI handwritten digits "
            f"(`sklearn.datasets.load_digits`, 8x8): {other[8]:.1%} as they are, "
            f"{other[32]:.1%} enlarged to 32x32 (bilinear), {other[64]:.1%} enlarged to "
            "64x64 by repeating each pixel (nearest neighbour).",
        ]
    )
    print(text)
    update_benchmarks("photos", text)


if __name__ == "__main__":
    main()
