"""Search spaces: a TOML file -> a validated `Space` -> keras-tuner hyperparameters.

A space file has an optional `description` and three tables, `[model]`, `[augment]` and
`[train]`. Every key is optional (the defaults are in `SCHEMA` below) and takes one of:

    key = 3                                     # fixed value
    key = {choice = [32, 48, 64]}               # one of a list
    key = {min = 1e-4, max = 1e-2, sampling = "log"}   # a range; `step` optional, ints step 1

Parsing validates everything up front and raises `SpaceError` with one line naming the file,
the key and what is wrong. No TensorFlow here: `digits spaces` stays fast.
"""

from __future__ import annotations

import difflib
import itertools
import math
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

MAX_BLOCKS = 6


class SpaceError(Exception):
    """An invalid space file; the message names the file, the key and the problem."""


@dataclass(frozen=True)
class Key:
    """Schema of one hyperparameter: its type, default and allowed values."""

    type: type
    default: Any
    help: str
    check: Callable[[Any], bool] = lambda v: True
    rule: str = ""  # says what `check` demands, for error messages
    options: tuple[str, ...] = ()


def _range(
    t: type,
    default: Any,
    help: str,
    lo: float,
    hi: float | None = None,
    *,
    lo_open: bool = False,
    hi_open: bool = False,
) -> Key:
    def check(v: Any) -> bool:
        above = v > lo if lo_open else v >= lo
        below = hi is None or (v < hi if hi_open else v <= hi)
        return above and below

    left = "(" if lo_open else "["
    right = "inf)" if hi is None else (f"{hi})" if hi_open else f"{hi}]")
    return Key(t, default, help, check, f"in {left}{lo}, {right}")


def _one_of(default: str, help: str, *options: str) -> Key:
    return Key(str, default, help, lambda v: v in options, f"one of {', '.join(options)}", options)


# Every knob a space can turn, with the default used when a space leaves it out.
SCHEMA: dict[str, dict[str, Key]] = {
    "model": {
        "blocks": _range(int, 2, "conv blocks", 1, MAX_BLOCKS),
        "convs_per_block": _range(int, 1, "conv layers in each block", 1, 10),
        **{
            f"filters_{i}": _range(int, 32 * 2 ** min(i - 1, 2), f"filters of block {i}", 1, 1024)
            for i in range(1, MAX_BLOCKS + 1)
        },
        "kernel_size": _range(int, 3, "conv kernel size", 1, 9),
        "padding": _one_of(
            "same", "conv padding ('valid' shrinks the map by k-1)", "same", "valid"
        ),
        "batch_norm": Key(bool, False, "batch norm after each conv and dense layer"),
        "downsample": _one_of("maxpool", "after each block", "maxpool", "strided", "none"),
        "residual": Key(
            bool, False, "each block a residual unit: its input added to its last conv's output"
        ),
        "dropout_conv": _range(float, 0.0, "dropout after each block", 0, 1, hi_open=True),
        "head": _one_of("flatten", "flatten or global average pooling", "flatten", "gap"),
        "dense_layers": _range(int, 1, "hidden dense layers", 0, 4),
        "dense_units": _range(int, 128, "units of each hidden dense layer", 1, 4096),
        "dropout_dense": _range(float, 0.0, "dropout after each dense layer", 0, 1, hi_open=True),
    },
    "augment": {
        # One random affine transform per image; never flips (they change digits).
        "rotation": _range(float, 0.0, "max rotation, degrees", 0, 90),
        "zoom": _range(float, 0.0, "max zoom in/out, fraction", 0, 0.5),
        "translate": _range(float, 0.0, "max shift, fraction of the image", 0, 0.5),
        "shear": _range(float, 0.0, "max shear, degrees", 0, 45),
        # Elastic distortion (Simard et al., 2003): a smooth random field moves every pixel.
        "elastic": _range(
            float, 0.0, "elastic: field strength (alpha), pixels; 34 is Simard's", 0, 100
        ),
        "elastic_sigma": _range(float, 4.0, "elastic: smoothness of the field, pixels", 1, 14),
    },
    "train": {
        "optimizer": _one_of("adam", "optimizer", "adam", "adamw", "sgd", "rmsprop"),
        "learning_rate": _range(float, 1e-3, "initial learning rate", 0, 10, lo_open=True),
        "schedule": _one_of(
            "exponential", "learning-rate schedule", "constant", "exponential", "cosine"
        ),
        "decay_rate": _range(
            float,
            0.9,
            "exponential: LR factor per epoch; longer runs stretch it",
            0,
            1,
            lo_open=True,
        ),
        "warmup_epochs": _range(int, 0, "cosine: linear warm-up epochs", 0, 100),
        "weight_decay": _range(float, 0.0, "adamw/sgd weight decay", 0, 1),
        "label_smoothing": _range(float, 0.0, "label smoothing", 0, 1, hi_open=True),
        "ema": _range(
            float,
            0.0,
            "weight averaging: momentum per step of a moving average of the weights, which "
            "validation scores and training ends with (0: off; 0.999 averages ~1,000 steps, "
            "starting from the first step's weights: keep it well under a trial's steps)",
            0,
            1,
            hi_open=True,
        ),
        "batch_size": _range(int, 128, "batch size", 1, 8192),
        "precision": _one_of(
            "float32",
            "mixed_bfloat16 computes in bfloat16, keeps weights in float32 (fast on CPUs with "
            "AMX or AVX512-BF16, slow elsewhere)",
            "float32",
            "mixed_bfloat16",
        ),
        "epochs": _range(int, 10, "epochs per trial (Hyperband: its max_epochs)", 1, 1000),
    },
}
KEY_TYPES = {name: key for table in SCHEMA.values() for name, key in table.items()}


def completed(values: dict[str, Any]) -> dict[str, Any]:
    """A configuration a study recorded, with the default of every key the schema gained
    since (a new key's default builds and trains what the toolkit did before it)."""
    return {**{name: key.default for name, key in KEY_TYPES.items()}, **values}


BUILTIN_DIRS = (
    Path(__file__).parent / "spaces",  # installed wheel: spaces/ is shipped inside the package
    Path(__file__).parent.parent / "spaces",  # source checkout or editable install
)


@dataclass(frozen=True)
class Param:
    """One hyperparameter: a fixed value, a choice, or a range."""

    name: str
    type: type
    fixed: Any = None
    choice: tuple | None = None
    min: float | None = None
    max: float | None = None
    step: float | None = None
    sampling: str = "linear"

    @property
    def tunable(self) -> bool:
        return self.choice is not None or self.min is not None

    def size(self) -> int | None:
        """Number of distinct values, or None when continuous."""
        if self.choice is not None:
            return len(self.choice)
        if self.min is None:
            return 1
        if self.type is int or self.step is not None:
            step = self.step or 1
            if self.sampling == "log":  # keras-tuner: log steps multiply by `step`
                return math.floor(math.log(self.max / self.min, step) + 1e-9) + 1
            return math.floor((self.max - self.min) / step + 1e-9) + 1
        return None

    def largest(self) -> Any:
        """The highest value this parameter can take (its only value when fixed)."""
        if self.min is not None:
            return self.max
        return max(self.choice) if self.choice is not None else self.fixed

    def edges(self) -> tuple[Any, Any] | None:
        """Lowest and highest values of a numeric range or choice with an inside.

        None for fixed, non-numeric and two-valued params: with two values both are edges,
        and a best value on one says nothing about the space being too narrow.
        """
        if self.type not in (int, float) or (self.size() or 3) < 3:
            return None
        if self.min is not None:
            return self.min, self.max
        if self.choice is not None:
            return min(self.choice), max(self.choice)
        return None

    def describe(self) -> str:
        if self.choice is not None:
            return "{" + ", ".join(map(str, self.choice)) + "}"
        if self.min is not None:
            step = f" step {self.step}" if self.step else ""
            log = " log" if self.sampling == "log" else ""
            return f"[{self.min}, {self.max}]{step}{log}"
        return str(self.fixed)

    def register(self, hp: Any, **condition: Any) -> Any:
        """Declare this parameter on a keras-tuner `HyperParameters`; return its value."""
        if self.type is bool and self.choice is not None and len(self.choice) == 2:
            # keras-tuner's Choice turns booleans into 0/1; Boolean keeps them (and HParams) true.
            return hp.Boolean(self.name, default=self.choice[0], **condition)
        if self.choice is not None:
            return hp.Choice(self.name, list(self.choice), **condition)
        if self.min is None:
            return hp.Fixed(self.name, self.fixed, **condition)
        if self.type is int:
            return hp.Int(
                self.name,
                int(self.min),
                int(self.max),
                step=self.step,
                sampling=self.sampling,
                **condition,
            )
        return hp.Float(
            self.name,
            float(self.min),
            float(self.max),
            step=self.step,
            sampling=self.sampling,
            **condition,
        )


@dataclass(frozen=True)
class Space:
    """A validated search space."""

    name: str
    path: str
    description: str
    params: dict[str, Param] = field(default_factory=dict)
    source: str = ""  # the TOML text it was read from, as studies record it

    def max_blocks(self) -> int:
        return int(self.params["blocks"].largest())

    def active(self) -> list[Param]:
        """The params a model can use: filters only up to the largest block count."""
        return [
            p
            for p in self.params.values()
            if not (p.name.startswith("filters_") and int(p.name[8:]) > self.max_blocks())
        ]

    def size(self) -> int | None:
        """Distinct configurations, or None when some parameter is continuous."""
        blocks = self.params["blocks"]
        other = [p for p in self.active() if p.name != "blocks" and not _is_filter(p)]
        sizes = [p.size() for p in other]
        if any(s is None for s in sizes):
            return None
        counts = []
        for b in _values(blocks):
            per_block = [self.params[f"filters_{i}"].size() for i in range(1, b + 1)]
            if any(s is None for s in per_block):
                return None
            counts.append(math.prod(per_block))
        return sum(counts) * math.prod(sizes)

    def with_fixed(self, name: str, value: Any) -> Space:
        """A copy with one parameter fixed (Hyperband owns the epoch count, for instance)."""
        params = dict(self.params)
        params[name] = Param(name, params[name].type, fixed=value)
        return replace(self, params=params)

    def register(self, hp: Any) -> dict[str, Any]:
        """Declare every active parameter on `hp`; return the values of this trial.

        When the block count is tuned, `filters_i` is conditional on `blocks >= i`, so the
        tuners neither sample nor count filters of blocks a model does not have.
        """
        values = {}
        blocks = self.params["blocks"]
        for p in self.active():
            if _is_filter(p) and blocks.tunable:
                i = int(p.name[8:])
                needed = [b for b in _values(blocks) if b >= i]
                if len(needed) < len(_values(blocks)):
                    values[p.name] = p.register(hp, parent_name="blocks", parent_values=needed)
                    continue
            values[p.name] = p.register(hp)
        return values

    def shape_options(self) -> list[list[Any]]:
        """The values each of SHAPE_KEYS can take, in that order."""
        return [
            _values(self.params[k])
            if self.params[k].type is int
            else list(self.params[k].choice or [self.params[k].fixed])
            for k in SHAPE_KEYS
        ]

    def shapes(self) -> Iterator[dict[str, Any]]:
        """Every combination of the shape keys' values."""
        for combo in itertools.product(*self.shape_options()):
            yield dict(zip(SHAPE_KEYS, combo, strict=True))

    def buildable_shape(self) -> dict[str, Any]:
        """The first combination of the shape keys whose CNN can be built (a space without
        one is refused on load)."""
        return next(s for s in self.shapes() if not unbuildable(s))

    def build_warnings(self) -> list[str]:
        """One line if some combinations of the shape keys cannot build, naming the keys."""
        bad = [s for s in self.shapes() if unbuildable(s)]
        if not bad:
            return []
        options = self.shape_options()
        tuned = [k for k, o in zip(SHAPE_KEYS, options, strict=True) if len(o) > 1]
        return [
            f"{self.path}: {len(bad)} of {math.prod(map(len, options))} combinations of "
            f"{', '.join(tuned or SHAPE_KEYS)} cannot build, e.g. "
            f"{', '.join(f'{k}={v}' for k, v in bad[0].items())} "
            f"({unbuildable(bad[0])}); such trials are recorded as failed"
        ]

    def to_dict(self) -> dict[str, str]:
        """Each active parameter as a short string, for study records and listings."""
        return {p.name: p.describe() for p in self.active()}


IMAGE_SIZE = 28
SHAPE_KEYS = ("blocks", "convs_per_block", "kernel_size", "padding", "downsample", "residual")


def unbuildable(config: dict[str, Any]) -> str | None:
    """Why the CNN of `config` cannot be built, or None: its feature map must not shrink
    below a kernel or a pooling window ("valid" convs take k-1 pixels, pools halve)."""
    if config["residual"] and config["padding"] == "valid":
        return "residual blocks need padding = 'same' (the shortcut keeps the map's size)"
    size, k = IMAGE_SIZE, config["kernel_size"]
    for b in range(1, config["blocks"] + 1):
        for c in range(1, config["convs_per_block"] + 1):
            if config["padding"] == "valid":
                if size < k:
                    return (
                        f"block {b} conv {c}: a {k}x{k} window does not fit the {size}x{size} map"
                    )
                size -= k - 1
            if config["downsample"] == "strided" and c == config["convs_per_block"]:
                size = (size + 1) // 2
        if config["downsample"] == "maxpool":
            if size < 2:
                return f"block {b} pool: a 2x2 window does not fit the {size}x{size} map"
            size //= 2
    return None


def _is_filter(p: Param) -> bool:
    return p.name.startswith("filters_")


def _values(p: Param) -> list[int]:
    if p.choice is not None:
        return sorted(p.choice)
    if p.min is not None:
        return list(range(int(p.min), int(p.max) + 1, int(p.step or 1)))
    return [p.fixed]


def builtin_spaces() -> dict[str, Path]:
    """Name -> path of every built-in space."""
    for folder in BUILTIN_DIRS:
        if folder.is_dir():
            return {p.stem: p for p in sorted(folder.glob("*.toml"))}
    return {}


def resolve(name_or_path: str) -> Path:
    """A built-in space name or a path to a TOML file -> the file's path."""
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise SpaceError(f"{path}: no such space file")
        return path
    builtin = builtin_spaces()
    if name_or_path in builtin:
        return builtin[name_or_path]
    raise SpaceError(
        f"unknown space '{name_or_path}': built-in spaces are {', '.join(builtin)} "
        "(or give the path of a .toml file)"
    )


def load(name_or_path: str) -> Space:
    """Read and validate a space (built-in name or path)."""
    path = resolve(name_or_path)
    try:
        text = path.read_text(encoding="utf-8")
        doc = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise SpaceError(f"{path}: not valid TOML ({e})") from None
    return parse(doc, path, text)


def parse(doc: dict[str, Any], path: Path, source: str = "") -> Space:
    """Validate a parsed TOML document against `SCHEMA`; `source` is its text."""
    description = doc.get("description", "")
    if not isinstance(description, str):
        raise SpaceError(f"{path}: description must be a string")
    for section in doc:
        if section != "description" and section not in SCHEMA:
            raise SpaceError(
                f"{path}: unknown table [{section}]{_suggest(section, SCHEMA)}; "
                f"tables are {', '.join(f'[{s}]' for s in SCHEMA)}"
            )
    params = {}
    for section, keys in SCHEMA.items():
        table = doc.get(section, {})
        if not isinstance(table, dict):
            raise SpaceError(f"{path}: {section} must be a table [{section}]")
        for name in table:
            if name not in keys:
                raise SpaceError(f"{path}: [{section}] unknown key '{name}'{_suggest(name, keys)}")
        for name, key in keys.items():
            where = f"{path}: [{section}] {name}"
            params[name] = _param(where, name, key, table.get(name, key.default))
    space = Space(path.stem, str(path), description.strip(), params, source)
    if all(unbuildable(s) for s in space.shapes()):  # stops at the first that builds
        problem = unbuildable(next(space.shapes()))
        raise SpaceError(f"{path}: no configuration can be built: {problem}")
    return space


def _suggest(word: str, known: dict) -> str:
    close = difflib.get_close_matches(word, list(known), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _param(where: str, name: str, key: Key, raw: Any) -> Param:
    if not isinstance(raw, dict):
        return Param(name, key.type, fixed=_value(where, key, raw))
    fields = set(raw)
    if "choice" in fields:
        if fields != {"choice"}:
            raise SpaceError(f"{where}: a choice takes no other fields, got {sorted(fields)}")
        choice = raw["choice"]
        if not isinstance(choice, list) or not choice:
            raise SpaceError(f"{where}: choice must be a non-empty list")
        values = tuple(_value(where, key, v) for v in choice)
        if len(set(values)) != len(values):
            raise SpaceError(f"{where}: choice has duplicate values")
        return Param(name, key.type, choice=values)
    if not fields <= {"min", "max", "step", "sampling"} or not {"min", "max"} <= fields:
        raise SpaceError(
            f"{where}: expected a value, {{choice = [...]}} or {{min, max, step?, sampling?}}, "
            f"got fields {sorted(fields)}"
        )
    if key.type not in (int, float):
        raise SpaceError(
            f"{where}: a {key.type.__name__} key takes a value or a choice, not a range"
        )
    lo, hi = _value(where, key, raw["min"]), _value(where, key, raw["max"])
    if lo > hi:
        raise SpaceError(f"{where}: min {lo} is greater than max {hi}")
    sampling = raw.get("sampling", "linear")
    if sampling not in ("linear", "log"):
        raise SpaceError(f"{where}: sampling must be 'linear' or 'log', got {sampling!r}")
    if sampling == "log" and lo <= 0:
        raise SpaceError(f"{where}: log sampling needs min > 0, got {lo}")
    step = raw.get("step")
    if step is not None:
        if isinstance(step, bool) or not isinstance(step, int | float) or step <= 0:
            raise SpaceError(f"{where}: step must be a positive number, got {step!r}")
        if key.type is int and not isinstance(step, int):
            raise SpaceError(f"{where}: step of an integer key must be an integer, got {step}")
        if sampling == "log" and step <= 1:
            raise SpaceError(f"{where}: a log range's step is a factor and must be > 1")
    return Param(name, key.type, min=lo, max=hi, step=step, sampling=sampling)


def _value(where: str, key: Key, v: Any) -> Any:
    ok = {
        int: isinstance(v, int) and not isinstance(v, bool),
        float: isinstance(v, int | float) and not isinstance(v, bool),
        bool: isinstance(v, bool),
        str: isinstance(v, str),
    }[key.type]
    if not ok:
        raise SpaceError(f"{where}: expected {key.type.__name__}, got {v!r}")
    v = key.type(v)
    if not key.check(v):
        raise SpaceError(f"{where}: {v!r} is not {key.rule}")
    return v
