"""The toolkit from Python: search, read the trials, retrain, measure fidelity, compare,
ensemble, export, predict digits and read numbers.

    from search import api

    space = api.load_space("smoke")                    # a built-in name, a .toml path or a dict
    study = api.search(space, study="mine", tuner="random", max_trials=3)
    rows = api.trials(study)                           # list of dicts, best first
    frame = api.trials_frame(study)                    # the same as a pandas DataFrame

Every function takes plain values and returns plain records; what the command line prints
goes to `progress` (a function of one line) or nowhere. The same modules serve `digits`, so a
study made here is one `digits results` and `digits board` read, and the other way round.
"""

from __future__ import annotations

import io
import tomllib
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from rich.console import Console

from search import results
from search import space as space_mod
from search.options import (
    EXPORT_FORMATS,
    MODELS_ROOT,
    SearchOptions,
    check_counts,
    check_time_budget,
)
from search.quiet import quiet_tensorflow
from search.space import Space, SpaceError
from search.study import DEFAULT_ROOT, Study

if TYPE_CHECKING:  # predict loads Pillow and SciPy: only where an image is read
    from search.predict import Number

Progress = Callable[[str], None]


class _Lines(io.StringIO):
    """A file that hands each complete line written to it to `progress`."""

    def __init__(self, progress: Progress):
        super().__init__()
        self.progress, self.pending = progress, ""

    def write(self, text: str) -> int:
        self.pending += text
        *lines, self.pending = self.pending.split("\n")
        for line in lines:
            self.progress(line)
        return len(text)


def _console(progress: Progress | None) -> Console:
    if progress is None:
        return Console(quiet=True)
    return Console(file=_Lines(progress), width=200, soft_wrap=True, highlight=False)


def _study(study: Study | str, root: str | Path) -> Study:
    return study if isinstance(study, Study) else Study(study, Path(root))


def load_space(space: Space | str | Path | dict[str, Any], name: str = "custom") -> Space:
    """A validated search space: a built-in name ("quick"), a path to a .toml file, or the
    TOML's content as a dict (`{"train": {"learning_rate": {"choice": [1e-3, 3e-3]}}}`)."""
    if isinstance(space, Space):
        return space
    if isinstance(space, dict):
        return space_mod.parse(space, Path(f"{name}.toml"), _toml(space, name))
    return space_mod.load(str(space))


def _toml(doc: dict[str, Any], name: str) -> str:
    """`doc` as TOML text, for the study's record (tables of plain values, as spaces are)."""

    def value(v: Any) -> str:
        if isinstance(v, dict):
            return "{" + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + "}"
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, bool):
            return "true" if v else "false"
        return f'"{v}"' if isinstance(v, str) else repr(v)

    lines = [f"description = {value(doc['description'])}"] if "description" in doc else []
    for table, keys in doc.items():
        if isinstance(keys, dict):
            lines += [f"[{table}]", *(f"{k} = {value(v)}" for k, v in keys.items())]
    text = "\n".join(lines) + "\n"
    if tomllib.loads(text) != doc:
        raise SpaceError(f"{name}: not a space (tables of values, choices and ranges)")
    return text


def search(
    space: Space | str | Path | dict[str, Any],
    *,
    study: str | None = None,
    root: str | Path = DEFAULT_ROOT,
    progress: Progress | None = None,
    **options: Any,
) -> Study:
    """Run (or resume) a search; returns its study. `options` are `SearchOptions`' fields
    (tuner, max_trials, max_epochs, train_size, val_size, executions, patience, seed, data,
    overwrite, time_budget in seconds, max_failures), as `digits search` takes them."""
    space = load_space(space)
    opts = SearchOptions(study=study or space.name, root=Path(root), **options)
    quiet_tensorflow()
    from search.tune import run_search

    run_search(space, opts, command="search.api.search", console=_console(progress))
    return Study(opts.study, opts.root)


def trials(study: Study | str, root: str | Path = DEFAULT_ROOT) -> list[dict[str, Any]]:
    """Every trial of a study, best first: status, score (mean ± spread over executions),
    epochs, seconds, the full-fidelity accuracy where measured, and its hyperparameters."""
    return results.trial_rows(_study(study, root))


def trials_frame(study: Study | str, root: str | Path = DEFAULT_ROOT) -> Any:
    """`trials` as a pandas DataFrame (pandas must be installed)."""
    try:
        import pandas as pd
    except ImportError:
        raise ImportError("trials_frame needs pandas: pip install pandas") from None
    return pd.DataFrame(trials(study, root))


def retrain(
    study: Study | str,
    *,
    top: int = 3,
    seeds: int = 1,
    epochs: int | None = None,
    hold_out: bool = False,
    time_budget: float | None = None,
    root: str | Path = DEFAULT_ROOT,
    progress: Progress | None = None,
) -> list[Path]:
    """Retrain the `top` trials with `seeds` seeds each; returns the members' folders."""
    check_counts(top=top, seeds=seeds, epochs=epochs)
    check_time_budget(time_budget)
    study = _study(study, root)
    study.read()
    quiet_tensorflow()
    from search.retrain import plan_members
    from search.retrain import retrain as train

    with study.lock():
        members = plan_members(study, top, seeds, epochs, hold_out)
        return train(study, members, _console(progress), time_budget)


def fidelity(
    study: Study | str,
    *,
    epochs: int | None = None,
    sample: int = 8,
    seeds: int = 2,
    root: str | Path = DEFAULT_ROOT,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Retrain a sample of the study's trials at full fidelity (`epochs` on every image
    outside the validation split, `seeds` each) and compare with the search's ranking;
    returns what `digits fidelity` prints (rank correlations, regret, seed spread)."""
    check_counts(epochs=epochs)
    study = _study(study, root)
    study.read()
    quiet_tensorflow()
    from search.fidelity import measure

    with study.lock():
        return measure(study, sample, seeds, epochs, _console(progress))


def compare(studies: Sequence[Study | str], *, root: str | Path = DEFAULT_ROOT) -> dict[str, Any]:
    """The held-out members of `studies` on their shared validation split: each
    configuration's errors by seed, each study's top k trials averaged (one seed each, by
    epochs), each study's ensemble, all pooled, a forward selection (what `digits compare`
    prints). Reads no test image, writes nothing."""
    chosen = [_study(s, root) for s in dict.fromkeys(studies)]  # each study once
    for study in chosen:
        study.read()
    quiet_tensorflow()
    from search.compare import compare as pooled

    return pooled(chosen)


def ensemble(
    study: Study | str, *, tta: bool = False, root: str | Path = DEFAULT_ROOT
) -> dict[str, Any]:
    """Average the members, evaluate once on the test set, write the error analysis;
    returns the evaluation (each member's and the ensemble's test accuracy and errors)."""
    study = _study(study, root)
    study.read()
    quiet_tensorflow()
    from search.pipeline import evaluate_and_report

    return evaluate_and_report(study, tta).evaluation


def export(
    study: Study | str,
    *,
    name: str | None = None,
    formats: Sequence[str] = EXPORT_FORMATS,
    models: str | Path = MODELS_ROOT,
    root: str | Path = DEFAULT_ROOT,
) -> Path:
    """Write the ensemble to `models/name/` (.keras, SavedModel, TFLite); returns the folder."""
    study = _study(study, root)
    study.read()
    quiet_tensorflow()
    from search.export import export as write

    return write(study, name or study.name, tuple(formats), "search.api.export", Path(models))


def predict(
    model: str | Path, images: np.ndarray | str | Path | Sequence[np.ndarray | str | Path]
) -> np.ndarray:
    """Digit probabilities [N, 10] from an exported model (its folder or .keras file).

    `images`: an array of one image or many, one file, or a list of files and arrays (one
    image each), as `predict.as_digits` takes them: digits as MNIST has them (28x28, light
    on dark) go to the model as they are; photos, scans and digits drawn dark on light are
    converted the way `digits predict` converts a file.
    An image that seems to hold several digits side by side, read as one, gets a
    `UserWarning` naming it.

    Raises:
        ImageError: an image that cannot be read, or holds no digit (the message names it).
        StudyError: no such model, or not one that classifies 28x28 digits.
    """
    from search.data import NUM_CLASSES
    from search.predict import as_digits, find_model, load_model

    file = find_model(Path(model), Path(model))
    batch, notes = as_digits(images)
    for note in notes:
        warnings.warn(note, stacklevel=2)
    if not len(batch):
        return np.zeros((0, NUM_CLASSES), np.float32)
    return load_model(file).predict(batch, verbose=0)


def read_numbers(
    model: str | Path, images: np.ndarray | str | Path | Sequence[np.ndarray | str | Path]
) -> list[Number]:
    """Each image read as a number written in a row: its digits split where they stand apart
    and each classified by an exported model (its folder or .keras file), left to right.

    `images`: as `predict` takes them; every image is converted (`predict.convert_number`),
    MNIST's 28x28 digits too, each a number of one digit. `Number.text` is the number
    ("427"), `Number.probability` the product of its digits', `Number.digits` each digit's
    prediction. Marks under half the digits' height written apart from them (a dash, a
    decimal point) are left out, and digits that touch are read as one.

    Raises:
        ImageError: an image that cannot be read, or holds no digit (the message names it).
        StudyError: no such model, or not one that classifies 28x28 digits.
    """
    from search.predict import convert_number, find_model, load_model, named_images, read

    file = find_model(Path(model), Path(model))
    numbers = [(name, convert_number(image, name)) for name, image, _ in named_images(images)]
    return read(load_model(file), numbers) if numbers else []
