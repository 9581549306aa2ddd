"""Configurations of the full preset side by side on the validation split (an A/B test).

    python benchmarks/ab.py EXPERIMENT [--epochs 24] [--workdir DIR]

Every arm is one fixed configuration: BASE (the full preset as the A/Bs began:
spaces/full.toml's first choice of every value it searched then, and dense width 256; kept
fixed since, so every stored member stays comparable) with the arm's changes, trained by
the toolkit itself: a one-trial search fixes the study and its validation split (the same
split in every arm), then `digits retrain --hold-out` trains the arm's members on the other
55,000 images. Scored on the 5,000 validation images only (the test set is not read): each
member's errors and mean negative log-likelihood (less noisy than errors at this accuracy),
the errors of each arm's probability average and the images all its members miss.

Experiments, by what they change:

 Shape of the members:
  shape    are members of different shapes less alike than members of one? Two members of
           the full preset's shape (2x2 convs, max pooling, valid padding), one with strided
           convolutions in place of the pooling, one with same padding; then the average of
           every pair of members: the one pair of one shape against the pairs of two.
           Every arm's members are numbered from seed 0, so the arms' first members share
           their seed (batch order, augmentation draws), which can only make a pair of two
           shapes more alike than in a real run.
  stronger same padding (the best member of `shape`, 1.75x the time per epoch) against the
           preset's shape, two members each; it reuses `shape`'s members.
  wide     48/96 filters (about 2.2x the convolutions' FLOPs) against the preset's 32/64, both
           40 epochs: are wider members better where longer ones stopped improving? It
           reuses the 40-epoch members.
  reference the published 15-CNN ensemble's block (three convs, the last one strided, in
           place of two convs and a max pool; dropout 0.4 after each block) at 40 epochs in
           batches of 256 (about 0.94x the images a second), against `batch`'s members; a
           3x3 strided conv where the reference has 5x5. Then every pair of the four
           members: do two families err less together than two members of one?

 How long they train:
  longer   the preset's shape trained 40 epochs instead of --epochs (24): three members of
           40 epochs take the time of five of 24; it reuses `shape`'s maxpool members.
  longest  60 epochs against `longer`'s 40: does the trend go on? Three members of 60 epochs
           would fill the full preset's 2 hours on the Intel VM's good minutes; it reuses
           the 40-epoch members.

 The training signal:
  schedule the quick preset's best configuration with its own schedule (the learning rate x 0.6
           per epoch, no label smoothing) or the full preset's (warm-up and cosine decay over
           the epochs trained, label smoothing 0.1); two members each. Run it at the quick
           preset's epochs (--epochs 12): per-epoch decay leaves later epochs little to do.
  brief    the quick preset where its members fit 3-5 epochs (an AVX2-only CPU, BENCHMARKS.md):
           its best configuration trained 4 epochs (x0.6 per epoch, so it stops at 0.13x its
           rate, not annealed), the same annealed by cosine decay over its 4 epochs, and
           one member of 8 epochs in the time of two of 4. Six members each: the average of
           every pair of a 4-epoch arm's (the preset's two members) against quick8's single
           members. The rule, written before the first member trained: the quick preset
           changes only if an arm errs 2 or more fewer than quick4's pairs, on average.
  sharp    no label smoothing against the preset's 0.1, both 40 epochs: smoothing pulls every
           member's top probability to about 0.9, so their average may add less than the
           members' own confidence would. It reuses the 40-epoch members.
  batch    batches of 256 (learning rate 2e-3) against 128 (1e-3), both 40 epochs: 1.10x the
           images a second in a probe by hand; worth it if it costs no accuracy. It reuses
           the 40-epoch members.
  sgd      SGD with Nesterov momentum 0.9 (learning rate 0.05, weight decay 5e-4, the same
           warm-up and cosine decay: a one-cycle shape) against Adam, both 40 epochs; the
           write-up trained with SGD. It reuses the 40-epoch members.

 Augmentation:
  elastic  affine augmentation alone, or with Simard's elastic distortion on top (alpha 34,
           sigma 4); two members per arm.
  elastic40 a weaker elastic field (alpha 16) on top of the affine augmentation, at 40
           epochs in batches of 256, against `batch`'s members: does elastic distortion pay
           once members train long enough to fit it? It reuses them.
  regularise the top of every regularising choice spaces/full.toml had (rotation 15, zoom
           0.15, conv dropout 0.3), half its bottom (5, 0.05, 0.1) and none of the three
           (shifts alone) against `batch6`'s bottom (10, 0.1, 0.2), six members each at 40
           epochs: the searches ranked these on 3-epoch trials, too short to reward
           regularisation that pays late (as they put the fastest rate first; `rate`). The
           top erred more, half the bottom less; does less go on paying?

 The ensemble:
  pool     does a bigger ensemble err less? `long`'s, `longest`'s, `wide`'s and `batch`'s
           members (no arm of its own), each arm's pair and the average of all eight; then
           the errors of the average of every k of them, for every k, with and without
           test-time augmentation (one-pixel shifts, as `--tta` makes).
  seeds    how far apart do members of one configuration land? Six members of `long`'s (40
           epochs): the spread of their errors says how many members an arm needs to see a
           change of a given size, and the errors of the average of every k of them, with
           and without TTA.
  anneal   do members that are not annealed to zero err apart more? Six members with the
           published reference's schedule (the learning rate x0.95 per epoch from 1e-3, so
           0.13x at the end of 40 epochs) against `seeds`' six of cosine decay to zero: each
           arm's spread and the errors of the average of every k of its members. The
           reference's 15 members gain about 10 test errors over one; ours, 3-4 over five.
  batch6   `batch` again with six members per arm: do batches of 256 (1.12x the images a
           second) cost nothing, at the resolution a new full setup's three seeds would
           deserve?
  rate     batches of 256 at 8e-3 and 1.6e-2 against `batch6`'s at 2e-3, six members each:
           the shipped full preset's searches put 8e-3, the top of its choices, first (seed
           17: all five of its best), on 3-epoch trials; do 40-epoch members gain from it or
           lose, and from a rate above the choices?
  subsample each member trained on its own stratified 90% of the 55,000 images (`digits
           retrain --subsample 0.9`), as the published reference's members each drew their
           own split, against `seeds`' six on all of them: do members that saw different
           images err apart more, enough to pay for the 10% each one does not see?
  hard     which validation images do the 40-epoch members all miss? Every member of the
           eight 40-epoch arms above (no arm of its own): how many images how many of them
           miss, and a picture of those their average misses
           (benchmarks/results/hard-validation.png).

Each member's validation probabilities are kept in benchmarks/results/ab/ARM.npz (commit
them: study folders and models do not outlive a session), and a member found there is never
trained again, so an arm grows across sessions and machines, and arms of one name share their
members (within one experiment and across them). A member interrupted mid-training resumes
with the same --workdir. Replaces the experiment's section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
from throughput import hardware, stale_install, update_benchmarks

if TYPE_CHECKING:
    from search.study import Study

SPACE = """
description = "A/B: one configuration of the full preset, arm {arm}"
[model]
blocks = 2
convs_per_block = {convs_per_block}
filters_1 = {filters_1}
filters_2 = {filters_2}
kernel_size = 3
padding = "{padding}"
batch_norm = true
downsample = "{downsample}"
dropout_conv = {dropout_conv}
dense_layers = 1
dense_units = {dense_units}
dropout_dense = {dropout_dense}
[augment]
rotation = {rotation}
zoom = {zoom}
translate = 0.1
elastic = {elastic}
[train]
optimizer = "{optimizer}"
weight_decay = {weight_decay}
learning_rate = {learning_rate}
schedule = "{schedule}"
decay_rate = {decay_rate}
warmup_epochs = 1
label_smoothing = {label_smoothing}
batch_size = {batch_size}
epochs = 24
"""
BASE = {
    "convs_per_block": 2,
    "filters_1": 32,
    "filters_2": 64,
    "padding": "valid",
    "downsample": "maxpool",
    "dropout_conv": 0.2,
    "dense_units": 256,
    "dropout_dense": 0.4,
    "rotation": 10.0,
    "zoom": 0.1,
    "elastic": 0.0,
    "optimizer": "adam",
    "weight_decay": 0.0,
    "learning_rate": 1e-3,
    "schedule": "cosine",
    "decay_rate": 0.9,  # exponential only
    "label_smoothing": 0.1,
    "batch_size": 128,
}
# The quick preset's best configuration in seed 6's search (spaces/quick.toml).
QUICK = {
    "filters_1": 24,
    "filters_2": 48,
    "dropout_conv": 0.1,
    "dense_units": 128,
    "dropout_dense": 0.3,
    "learning_rate": 4e-3,
    "schedule": "exponential",
    "decay_rate": 0.6,
    "label_smoothing": 0.0,
}
# Arms several experiments share: one definition each, so an experiment finds the members
# another one trained in the store (`pool` and `hard` have no arm of their own: they train
# only members missing from the arms they borrow). Arms compared with one of them build on
# it, so the change named is the only difference.
LONG = ({"epochs": 40}, 2)
LONGEST = ({"epochs": 60}, 2)
WIDE = ({"filters_1": 48, "filters_2": 96, **LONG[0]}, 2)
BATCH256 = ({"batch_size": 256, "learning_rate": 2e-3, **LONG[0]}, 2)
SHARP = ({"label_smoothing": 0.0, **LONG[0]}, 2)
SGD = ({"optimizer": "sgd", "learning_rate": 0.05, "weight_decay": 5e-4, **LONG[0]}, 2)
ELASTIC16 = ({**BATCH256[0], "elastic": 16.0}, 2)
REFERENCE = (
    {**BATCH256[0], "convs_per_block": 3, "downsample": "strided", "dropout_conv": 0.4},
    2,
)
LONG6 = (LONG[0], 6)  # the same study as LONG: its first two members are LONG's
BATCH6 = (BATCH256[0], 6)  # the same study as BATCH256
RATE8 = ({**BATCH256[0], "learning_rate": 8e-3}, 6)
RATE16 = ({**BATCH256[0], "learning_rate": 1.6e-2}, 6)
# The top of spaces/full.toml's old choices for each regularising value BASE takes the bottom
# of, half that bottom (the file's values since), and none of them: the shifts stay.
STRONG6 = ({**BATCH256[0], "rotation": 15.0, "zoom": 0.15, "dropout_conv": 0.3}, 6)
WEAK6 = ({**BATCH256[0], "rotation": 5.0, "zoom": 0.05, "dropout_conv": 0.1}, 6)
SHIFT6 = ({**BATCH256[0], "rotation": 0.0, "zoom": 0.0, "dropout_conv": 0.0}, 6)
# The published reference's members each drew their own 90% of the training images.
SUB6 = ({"subsample": 0.9, **LONG[0]}, 6)
# The published reference's schedule: x0.95 per epoch from 1e-3, not annealed to zero.
DECAY6 = ({"schedule": "exponential", "decay_rate": 0.95, **LONG[0]}, 6)
# The quick preset when a slow CPU fits only a few epochs per member: as it trains now, the
# same annealed to zero, and one member in the time of two.
QUICK4 = ({**QUICK, "epochs": 4}, 6)
COSINE4 = ({**QUICK, "schedule": "cosine", "epochs": 4}, 6)
QUICK8 = ({**QUICK, "epochs": 8}, 6)
# The shipped members (WEAK6) at the epochs a slow CPU's 2 hours gave them (12-14 on the
# AVX2-only EPYC, full seed 20, which made the 40-epoch runs' 31 test errors): do 40 pay?
# Rule, written before any member trained: 14 epochs are enough if weak14's members err at
# most 3 more than weak's on average (22.7) and its average of all six at most 2 more (20).
WEAK14 = ({**WEAK6[0], "epochs": 14}, 6)
HARD_PICTURE = Path(__file__).parent / "results" / "hard-validation.png"
STORE = Path(__file__).parent / "results" / "ab"  # every arm's members, scored (Store)
# experiment -> arm -> (changes to BASE, members); `pairs`: also score every pair of members;
# `pool`: also the average of every member of every arm, and of every k of them (with TTA);
# `hard`: also the average of every member, and the images the members miss (a picture);
# `curves`: also the average of every k members of each arm, for every k;
# `spread`: also the mean and standard deviation of each arm's members' errors.
# An arm uses its study's first `members` members by seed, so arms of one name share them.
# A change of `epochs` trains that arm's members for as many epochs instead of --epochs;
# one of `subsample` trains each on its own draw of that share of the 55,000 images.
EXPERIMENTS: dict[str, dict] = {
    "elastic": {
        "section": "augment-ab",
        "title": "Elastic distortion: A/B on the validation split",
        "arms": {"affine": ({}, 2), "elastic": ({"elastic": 34.0}, 2)},
        "pairs": False,
    },
    "elastic40": {
        "section": "elastic40-ab",
        "title": "A weaker elastic field (alpha 16) at 40 epochs, batches of 256",
        "arms": {"batch256": BATCH256, "elastic16": ELASTIC16},
        "pairs": False,
    },
    "reference": {
        "section": "reference-ab",
        "title": "The published reference's block (three convs, the last strided) at 40 epochs",
        "arms": {"batch256": BATCH256, "reference": REFERENCE},
        "pairs": True,
    },
    "shape": {
        "section": "shape-ab",
        "title": "Members of one shape or of three: A/B on the validation split",
        "arms": {
            "maxpool": ({}, 2),
            "strided": ({"downsample": "strided"}, 1),
            "same": ({"padding": "same"}, 1),
        },
        "pairs": True,
    },
    "stronger": {
        "section": "stronger-ab",
        "title": "Same padding against the preset's shape, two members each",
        "arms": {"maxpool": ({}, 2), "same": ({"padding": "same"}, 2)},
        "pairs": False,
    },
    "longer": {
        "section": "longer-ab",
        "title": "The preset's shape trained 24 or 40 epochs, two members each",
        "arms": {"maxpool": ({}, 2), "long": LONG},
        "pairs": False,
    },
    "longest": {
        "section": "longest-ab",
        "title": "The preset's shape trained 40 or 60 epochs, two members each",
        "arms": {"long": LONG, "longest": LONGEST},
        "pairs": False,
    },
    "wide": {
        "section": "wide-ab",
        "title": "Wider blocks (48/96 filters) against the preset's shape, 40 epochs each",
        "arms": {"long": LONG, "wide": WIDE},
        "pairs": False,
    },
    "sharp": {
        "section": "sharp-ab",
        "title": "No label smoothing against the preset's 0.1, 40 epochs each",
        "arms": {"long": LONG, "sharp": SHARP},
        "pairs": False,
    },
    "batch": {
        "section": "batch-ab",
        "title": "Batches of 256 against 128, 40 epochs each",
        "arms": {"long": LONG, "batch256": BATCH256},
        "pairs": False,
    },
    "sgd": {
        "section": "sgd-ab",
        "title": "SGD with Nesterov momentum against Adam, 40 epochs each",
        "arms": {"long": LONG, "sgd": SGD},
        "pairs": False,
    },
    "pool": {
        "section": "pool-ab",
        "title": "More members: the 40-epoch and longer members of the A/Bs above, averaged",
        "arms": {"long": LONG, "longest": LONGEST, "wide": WIDE, "batch256": BATCH256},
        "pairs": False,
        "pool": True,
    },
    "seeds": {
        "section": "seeds-ab",
        "title": "Six members of one configuration: how far apart seeds land",
        "arms": {"long": LONG6},
        "pairs": False,
        "pool": True,
        "spread": True,
    },
    "anneal": {
        "section": "anneal-ab",
        "title": "Decay x0.95 per epoch against cosine to zero, six members each",
        "arms": {"long": LONG6, "decay95": DECAY6},
        "pairs": False,
        "curves": True,
        "spread": True,
    },
    "batch6": {
        "section": "batch6-ab",
        "title": "Batches of 256 against 128 at 40 epochs, six members each",
        "arms": {"long": LONG6, "batch256": BATCH6},
        "pairs": False,
        "curves": True,
        "spread": True,
    },
    # The new arm first: arms train in this order, and an arm trains only the members missing
    # from its store (benchmarks/results/ab/); `long` has all six there again.
    "subsample": {
        "section": "subsample-ab",
        "title": "Each member on its own 90% of the images against all of them, six each",
        "arms": {"sub90": SUB6, "long": LONG6},
        "pairs": False,
        "curves": True,
        "spread": True,
    },
    "rate": {
        "section": "rate-ab",
        "title": "Batches of 256 at 2e-3, 8e-3 and 1.6e-2, 40 epochs, six members each",
        "arms": {"batch256": BATCH6, "rate8": RATE8, "rate16": RATE16},
        "pairs": False,
        "curves": True,
        "spread": True,
    },
    "regularise": {
        "section": "regularise-ab",
        "title": "Regularisation from the searches' old top down to shifts alone, 40 epochs",
        "arms": {"strong": STRONG6, "batch256": BATCH6, "weak": WEAK6, "shift": SHIFT6},
        "pairs": False,
        "curves": True,
        "spread": True,
    },
    "short": {
        "section": "short-ab",
        "title": "The shipped members at 14 epochs against 40, six each",
        "arms": {"weak": WEAK6, "weak14": WEAK14},
        "pairs": False,
        "curves": True,
        "spread": True,
    },
    "brief": {
        "section": "brief-ab",
        "title": "The quick preset's members at 4 epochs: as trained, annealed, or one of 8",
        "arms": {"quick4": QUICK4, "cosine4": COSINE4, "quick8": QUICK8},
        "pairs": False,
        "curves": True,
        "spread": True,
    },
    "hard": {
        "section": "hard-ab",
        "title": "The validation images every 40-epoch member misses",
        "arms": {
            "long": LONG,
            "longest": LONGEST,
            "wide": WIDE,
            "batch256": BATCH256,
            "sharp": SHARP,
            "sgd": SGD,
            "elastic16": ELASTIC16,
            "reference": REFERENCE,
        },
        "pairs": False,
        "hard": True,
    },
    "schedule": {
        "section": "schedule-ab",
        "title": "The quick preset's schedule against the full preset's",
        "arms": {
            "quick": (QUICK, 2),
            "cosine": ({**QUICK, "schedule": "cosine", "label_smoothing": 0.1}, 2),
        },
        "pairs": False,
    },
}


def digits(*args: str, cwd: Path) -> None:
    subprocess.run([sys.executable, "-m", "search", *args], cwd=cwd, check=True)


def arm_study(arm: str, text: str, folder: Path) -> Study:
    """The arm's study in `folder` for its space `text`: a one-trial, one-epoch search on
    2,000 images, which only fixes the configuration and the validation split (the same in
    every arm); resumes."""
    from search.study import Study

    space = folder / f"{arm}.toml"
    space.write_text(text)
    if not (folder / "logs" / arm / "tuner" / "oracle.json").exists():
        search = ["search", "--space", str(space), "--study", arm, "--tuner", "random"]
        digits(
            *search, "--max-trials", "1", "--max-epochs", "1", "--train-size", "2000", cwd=folder
        )
    return Study(arm, folder / "logs")


class ArmProbs(NamedTuple):
    """An arm's members scored on its validation split."""

    plain: list[np.ndarray]  # each member's probabilities
    shifted: list[np.ndarray]  # each member's averaged over the TTA views
    x: np.ndarray  # the split's images
    y: np.ndarray  # the split's labels
    cpus: dict[str, list[int]]  # CPU -> the seeds of the members trained on it


class Store:
    """An arm's members on its validation split, kept in STORE/ARM.npz: the one result of a
    member's hour that a session can commit (models and study folders do not outlive it).

    Keyed by `text`, what the members are (the arm's space text as its study searched it,
    epochs, share of the images), and by the validation labels; a stored member is
    never trained again, so an arm grows across sessions and machines. Probabilities in
    float16, plain and with TTA (about 180 KB a member, compressed).
    """

    COLUMNS = ("plain", "shifted", "cpu")  # per member: its probabilities, with TTA, its CPU

    def __init__(self, arm: str, text: str, y: np.ndarray):
        self.key = hashlib.sha256(text.encode()).hexdigest()[:16]
        self.labels = hashlib.sha256(y.astype(np.int64).tobytes()).hexdigest()[:16]
        self.path = STORE / f"{arm}.npz"
        self.members: dict[int, dict] = {}
        if not self.path.exists():
            return
        with np.load(self.path) as f:
            for field, what, mine in (
                ("key", "configuration", self.key),
                ("labels", "validation split", self.labels),
            ):
                if str(f[field]) != mine:
                    raise SystemExit(
                        f"{self.path}: stored for another {what} ({f[field]}, this run "
                        f"{mine}); delete it or give the arm a new name"
                    )
            for i, seed in enumerate(f["seeds"]):
                self.members[int(seed)] = {k: f[k][i] for k in self.COLUMNS}

    def add(self, seed: int, plain: np.ndarray, shifted: np.ndarray) -> None:
        """Keep one member's probabilities (written at once, atomically)."""
        from search.study import atomic_path

        self.members[seed] = {
            "plain": plain.astype(np.float16),
            "shifted": shifted.astype(np.float16),
            "cpu": hardware(),
        }
        seeds = sorted(self.members)
        columns = {k: np.array([self.members[s][k] for s in seeds]) for k in self.COLUMNS}
        with atomic_path(self.path) as tmp:
            np.savez_compressed(tmp, key=self.key, labels=self.labels, seeds=seeds, **columns)


def arm_epochs(changes: dict, default: int) -> int:
    """The epochs an arm's members train: its own where it sets them, else --epochs."""
    return changes.get("epochs", default)


def arm_probs(arm: str, changes: dict, members: int, folder: Path, epochs: int) -> ArmProbs:
    """The arm's first `members` members by seed: from the store, or trained here (hold-out,
    in `folder`, resumable) and stored one by one."""
    from rich.console import Console

    from search.ensemble import build_ensemble, load_member, predict
    from search.retrain import (
        MANIFEST,
        MODEL_FILE,
        load_study_data,
        member_dir,
        plan_members,
        retrain,
        validation_split,
    )
    from search.study import read_json

    text = SPACE.format(arm=arm, **{**BASE, **changes})
    study = arm_study(arm, text, folder)
    split = validation_split(study, load_study_data(study))
    epochs = arm_epochs(changes, epochs)
    subsample = changes.get("subsample", 1.0)
    drawn = f", subsample: {subsample}" if subsample < 1 else ""
    store = Store(arm, f"{text}epochs: {epochs}{drawn}", split.y_val)
    planned = plan_members(study, 1, members, epochs, hold_out=True, subsample=subsample)
    missing = [member for member in planned if member.seed not in store.members]
    console = Console()
    # `retrain` gets one member at a time (so each is stored as soon as it is trained) and
    # counts only that one: the arm's count and ETA are said here. A member resumed from its
    # backup takes a fraction of a whole one, so the ETA counts only members begun here.
    whole: list[float] = []
    for k, member in enumerate(missing):
        done = len(planned) - len(missing) + k
        said = f"{arm}: member {done + 1} of {len(planned)} (seed {member.seed})"
        if whole:
            said += f"; ETA {sum(whole) / len(whole) * (len(missing) - k):.0f} min for the arm"
        console.print(said)
        trained = member_dir(study, member.name)
        resumed, started = trained.exists(), time.monotonic()
        with study.lock():
            retrain(study, [member], console)
        model = load_member(read_json(trained / MANIFEST), trained / MODEL_FILE)
        views = build_ensemble([model], tta=True, name=f"{model.name}_tta")
        store.add(member.seed, predict(model, split.x_val), predict(views, split.x_val))
        if not resumed:
            whole.append((time.monotonic() - started) / 60)
    seeds = [member.seed for member in planned]
    cpus: dict[str, list[int]] = {}
    for seed in seeds:
        cpus.setdefault(str(store.members[seed]["cpu"]), []).append(seed)
    plain, shifted = (
        [store.members[seed][view].astype(np.float32) for seed in seeds]
        for view in ("plain", "shifted")
    )
    return ArmProbs(plain, shifted, split.x_val, split.y_val, cpus)


def scores(probs: list[np.ndarray], y: np.ndarray) -> dict:
    from search.ensemble import accuracy

    def nll(p: np.ndarray) -> float:
        return float(-np.log(np.maximum(p[np.arange(len(y)), y], 1e-12)).mean())

    wrong = [p.argmax(axis=1) != y for p in probs]
    return {
        "errors": [int(w.sum()) for w in wrong],
        "nll": [nll(p) for p in probs],
        "average": accuracy(np.mean(probs, axis=0), y)[1],
        "all_miss": int(np.logical_and.reduce(wrong).sum()),
    }


def size_table(columns: dict[str, list[np.ndarray]], y: np.ndarray) -> list[str]:
    """Errors of the average of every k members of each column (its header: the members),
    for every k up to the smallest column's size."""
    from search.ensemble import accuracy

    rows = [
        f"| members averaged | subsets | {' | '.join(columns)} |",
        "|---|---|" + "---|" * len(columns),
    ]
    size = min(len(probs) for probs in columns.values())
    for k in range(1, size + 1):
        subsets = list(itertools.combinations(range(size), k))
        cells = []
        for probs in columns.values():
            errors = [accuracy(np.mean([probs[i] for i in c], axis=0), y)[1] for c in subsets]
            cells.append(f"{np.mean(errors):.1f} ({min(errors)}-{max(errors)})")
        rows.append(f"| {k} | {len(subsets)} | {' | '.join(cells)} |")
    return rows


def missed_table(members: list[np.ndarray], y: np.ndarray, images: str) -> list[str]:
    """How many of the `images` (e.g. "validation images") how many of the members miss."""
    missed = np.sum([p.argmax(axis=1) != y for p in members], axis=0)
    n = len(members)
    return [
        f"| missed by at least | {images} |",
        "|---|---|",
        *(
            f"| {k} of the {n} members | {int((missed >= k).sum())} |"
            for k in (n, n - 2, n // 2, 1)
        ),
    ]


def hard_images(members: list[np.ndarray], x: np.ndarray, y: np.ndarray) -> list[str]:
    """How many validation images how many of the members miss, and a picture of those the
    average of them all misses (drawn as `digits report` draws the test set's)."""
    from search.report import plot_misclassified

    title = f"Validation images the average of {len(members)} members misses"
    shown = plot_misclassified(x, y, np.mean(members, axis=0), HARD_PICTURE, title)
    return [
        "",
        *missed_table(members, y, "validation images"),
        "",
        f"![{title}](benchmarks/results/{HARD_PICTURE.name}) ({shown} images: true→predicted, "
        "the average's confidence)",
    ]


def trained_epochs(arms: dict, default: int) -> str:
    """The epochs the arms' members trained, for the section's header: most arms set their
    own (LONG and those built on it, brief's), so --epochs alone would misstate them."""
    by_epochs: dict[int, list[str]] = {}
    for arm, (changes, _) in arms.items():
        by_epochs.setdefault(arm_epochs(changes, default), []).append(arm)
    if len(by_epochs) == 1:
        return f"{next(iter(by_epochs))} epochs each"
    return "; ".join(f"{n} epochs ({', '.join(by_epochs[n])})" for n in sorted(by_epochs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("experiment", choices=EXPERIMENTS)
    parser.add_argument("--epochs", type=int, default=24)
    parser.add_argument("--workdir", type=Path, help="run here and keep the outputs (resumable)")
    args = parser.parse_args()
    if why := stale_install():
        parser.error(why)
    experiment = EXPERIMENTS[args.experiment]
    arms = experiment["arms"]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.workdir or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        outputs = {
            arm: arm_probs(arm, changes, n, folder, args.epochs)
            for arm, (changes, n) in arms.items()
        }
    pool = experiment.get("pool", False)
    minutes = (time.perf_counter() - started) / 60
    y = next(iter(outputs.values())).y
    assert all(np.array_equal(y, out.y) for out in outputs.values()), "arms split differently"
    probs = {arm: out.plain for arm, out in outputs.items()}
    groups = {
        f"{arm} ({', '.join(f'{k} {v}' for k, v in changes.items()) or 'the base'})": probs[arm]
        for arm, (changes, _) in arms.items()
    }
    if experiment["pairs"]:
        members = {f"{arm} {i + 1}": p for arm, ps in probs.items() for i, p in enumerate(ps)}
        for (a, pa), (b, pb) in itertools.combinations(members.items(), 2):
            groups[f"pair: {a} + {b}"] = [pa, pb]
    below = []  # lines under the table
    hard = experiment.get("hard", False)
    everyone = [p for ps in probs.values() for p in ps]
    if (pool or hard) and len(arms) > 1:
        groups[f"all {len(everyone)} members"] = everyone
    if pool:
        shifted = [q for out in outputs.values() for q in out.shifted]
        columns = {"errors of the average: mean (min-max)": everyone, "with TTA": shifted}
        below = ["", *size_table(columns, y)]
    if experiment.get("curves", False):
        columns = {f"{arm}: errors of the average, mean (min-max)": probs[arm] for arm in arms}
        below = ["", *size_table(columns, y)]
    if hard:
        below = hard_images(everyone, next(iter(outputs.values())).x, y)
    if experiment.get("spread", False):
        below.append("")
        for arm, ps in probs.items():
            errors = scores(ps, y)["errors"]
            below.append(
                f"Validation errors per member of {arm}: mean {np.mean(errors):.1f}, standard "
                f"deviation {np.std(errors, ddof=1):.1f} over {len(errors)} seeds."
            )
    rows = []
    for name, group in groups.items():
        s = scores(group, y)
        rows.append(
            f"| {name} | {', '.join(map(str, s['errors']))} | "
            f"{', '.join(f'{n:.4f}' for n in s['nll'])} | {s['average']} | {s['all_miss']} |"
        )
    where = "; ".join(
        f"{arm} seeds {', '.join(map(str, seeds))} on {cpu}"
        for arm, out in outputs.items()
        for cpu, seeds in out.cpus.items()
    )
    text = "\n".join(
        [
            f"## {experiment['title']}",
            "",
            f"`python benchmarks/ab.py {args.experiment} --epochs {args.epochs}` on "
            f"{hardware()}, {time.strftime('%Y-%m-%d')} ({minutes:.0f} min this run). "
            "Fixed configurations (ab.py's BASE with each arm's changes), hold-out members "
            f"trained {trained_epochs(arms, args.epochs)} on 55,000 images; scored on the "
            f"{len(y):,} validation images (the test set is not read). "
            f"Members trained (kept in benchmarks/results/ab/, each trained once): {where}.",
            "",
            "| members | validation errors per member | mean NLL per member "
            "| errors of the average | missed by all |",
            "|---|---|---|---|---|",
            *rows,
            *below,
        ]
    )
    print(text)
    update_benchmarks(experiment["section"], text)


if __name__ == "__main__":
    main()
