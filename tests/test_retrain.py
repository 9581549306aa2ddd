from __future__ import annotations

import io
import json
import time
from dataclasses import replace

import keras
import numpy as np
import pytest
from conftest import copy_of
from rich.console import Console

from search import data, space
from search.budget import BUDGET_FILE, MIN_EPOCHS, TimeBudget, recorded_rates
from search.retrain import (
    CLOCK_FILE,
    MANIFEST,
    MODEL_FILE,
    EpochProgress,
    Member,
    calibrate,
    finished_members,
    member_dir,
    mixed_calibration,
    plan_members,
    retrain,
    train_member,
)
from search.study import Study


class Recorder(keras.callbacks.Callback):
    """Records the epochs it sees; raises KeyboardInterrupt after `stop_after`, like Ctrl-C."""

    def __init__(self, stop_after: int | None = None):
        super().__init__()
        self.seen: list[int] = []
        self.rates: list[float] = []  # the learning rate each epoch trained at
        self.stop_after = stop_after

    def on_epoch_begin(self, epoch, logs=None):
        self.rates.append(float(self.model.optimizer.learning_rate))

    def on_epoch_end(self, epoch, logs=None):
        self.seen.append(epoch)
        if epoch == self.stop_after:
            raise KeyboardInterrupt


def smoke_member(name: str = "t0_s0", **values: object) -> Member:
    s = space.load("smoke")
    config = {p.name: p.choice[0] if p.choice else p.fixed for p in s.params.values()}
    return Member(name, "0", 0, epochs=3, val_accuracy=0.9, best_epoch=3, config=config | values)


def test_every_member_has_a_seed_of_its_own(finished_study):
    study = Study("smoke", finished_study)
    members = plan_members(study, top=3, seeds=2, epochs=1)
    assert len({m.seed for m in members}) == len({m.name for m in members}) == 6
    assert [m.trial_id for m in members[::2]] == [m.trial_id for m in members[1::2]]
    # A larger --top keeps the names, hence the trained members, of a smaller one.
    assert plan_members(study, top=2, seeds=2, epochs=1) == members[:4]


def test_a_subsampling_member_trains_on_its_own_draw_under_its_own_name(finished_study, tmp_path):
    study = Study("smoke", finished_study)
    full = plan_members(study, top=1, seeds=2, epochs=1, hold_out=True)
    drawn = plan_members(study, top=1, seeds=2, epochs=1, hold_out=True, subsample=0.9)
    # Not the full-data members of the same trials and seeds, whose folders a resume reuses.
    assert [m.name for m in drawn] == [m.name.replace("_ho", "_sub90_ho") for m in full]
    assert [m.seed for m in drawn] == [m.seed for m in full]
    # Two shares never share a name: 0.905 is not 0.9.
    assert plan_members(study, top=1, seeds=1, epochs=1, subsample=0.905)[0].name.endswith(
        "_sub90.5"
    )

    d = data.load()
    x, y = d.x_train[:400], d.y_train[:400]
    member = replace(smoke_member("t0_s0_sub50"), epochs=1, subsample=0.5)
    train_member(Study("s", tmp_path), member, x, y, Recorder())
    manifest = json.loads((member_dir(Study("s", tmp_path), member.name) / MANIFEST).read_text())
    assert manifest["train_images"] == 200 and manifest["subsample"] == 0.5
    # A share that rounds to every image trains on all of them, not on a failed draw.
    almost = replace(smoke_member("t0_s0_sub99.9"), epochs=1, subsample=0.999)
    train_member(Study("s", tmp_path), almost, x, y, Recorder())
    manifest = json.loads((member_dir(Study("s", tmp_path), almost.name) / MANIFEST).read_text())
    assert manifest["train_images"] == 400
    # Each seed draws its own share, stratified: every digit keeps its proportion.
    picks = [data.stratified_indices(y, 200, seed)[0] for seed in (0, 1)]
    assert len(set(picks[0]) ^ set(picks[1])) > 0
    counts = np.bincount(y[picks[0]], minlength=10)
    assert np.abs(counts - np.bincount(y, minlength=10) / 2).max() <= 1


def test_finished_members_come_in_plan_order_not_name_order(tmp_path):
    study = Study("s", tmp_path)
    for seed in (10, 2, 0):  # by name: t0_s0, t0_s10, t0_s2
        member = replace(smoke_member(f"t0_s{seed}"), seed=seed)
        folder = member_dir(study, member.name)
        folder.mkdir(parents=True)
        (folder / MODEL_FILE).write_bytes(b"")
        (folder / MANIFEST).write_text(json.dumps({"name": member.name, "seed": seed}))
    assert [m["seed"] for m, _ in finished_members(study)] == [0, 2, 10]


def test_members_of_mixed_label_smoothing_are_flagged():
    alike = [smoke_member("a", label_smoothing=0.1), smoke_member("b", label_smoothing=0.1)]
    assert mixed_calibration(alike) is None
    warning = mixed_calibration([*alike, smoke_member("c", label_smoothing=0.0)])
    assert warning and "label_smoothing 0.0, 0.1" in warning


def test_interrupted_member_resumes_from_its_last_epoch(tmp_path):
    member = smoke_member(batch_norm=True)  # trained with the fused layer, saved without it
    d = data.load()
    x, y = d.x_train[:512], d.y_train[:512]
    study = Study("s", tmp_path)
    folder = member_dir(study, member.name)

    with pytest.raises(KeyboardInterrupt):
        train_member(study, member, x, y, Recorder(stop_after=1))
    assert (folder / "backup").is_dir() and not (folder / MANIFEST).exists()
    assert float((folder / CLOCK_FILE).read_text()) > 0  # the seconds of the epochs kept
    (folder / CLOCK_FILE).write_text("600.0\n")  # as if they had taken ten minutes

    again = Recorder()
    started = time.monotonic()
    train_member(study, member, x, y, again)
    resumed = time.monotonic() - started
    assert again.seen == [2]  # epochs 0 and 1 were kept; only the last one ran
    # The schedule goes on where it was: the third epoch's rate, as in a fit never stopped.
    c = member.config
    third = c["learning_rate"] * c["decay_rate"] ** (min(c["epochs"], 3) * 2 / 3)
    assert again.rates == pytest.approx([third], rel=1e-5)
    manifest = json.loads((folder / MANIFEST).read_text())
    assert manifest["epochs"] == 3 and manifest["name"] == "t0_s0"
    assert 600 < manifest["seconds"] <= 600 + resumed + 0.1  # every epoch's time, not the last's
    assert not (folder / "backup").exists() and not (folder / CLOCK_FILE).exists()
    saved = keras.saving.load_model(folder / "member.keras")  # no custom objects needed
    assert saved.name == "t0_s0"
    assert {type(layer) for layer in saved.layers if layer.name.endswith("_bn")} == {
        keras.layers.BatchNormalization
    }


def budget_for(study: Study, members: list, x, y, seconds: float) -> TimeBudget:
    """A retraining's budget as `retrain` makes it: calibrated (or as recorded), then sized."""
    path = study.dir / "retrain" / BUDGET_FILE
    return TimeBudget(
        path, members, len(y), seconds, calibrate(members, x, y, recorded_rates(path))
    )


def test_a_time_budget_sizes_each_member_from_what_the_ones_before_took(tmp_path):
    d = data.load()
    x, y = d.x_train[:512], d.y_train[:512]
    study = Study("s", tmp_path)
    a, b = smoke_member("a"), replace(smoke_member("b"), epochs=10**6)
    out = io.StringIO()
    console = Console(file=out)
    budget = budget_for(study, [a, b], x, y, 3600)
    assert budget.size(a, [b], console).epochs == 3  # room for more: its planned epochs cap it
    # `a` took 10x its calibrated time: `b` is sized at that pace.
    budget.trained(a, 3, 3 * budget.epoch_seconds([a]) * 10)
    assert budget.slowdown() == pytest.approx(10)
    # A member that draws half the images takes half the time an epoch.
    half = budget.epoch_seconds([replace(a, subsample=0.5)])
    assert half == pytest.approx(budget.epoch_seconds([a]) / 2)
    sized = budget.size(b, [], console).epochs  # the last: planned for 90% of the time
    assert sized == pytest.approx(0.9 * 3600 / (10 * budget.epoch_seconds([b])), rel=0.01)
    recorded = json.loads((study.dir / "retrain" / BUDGET_FILE).read_text())
    assert recorded["epochs"] == {"a": 3, "b": sized} and recorded["images_per_s"]["0"] > 0
    # A resumed run keeps the epochs a member was sized to (its schedule depends on them),
    # and a member that does not fit at all gets one epoch, with a warning.
    again = budget_for(study, [b, smoke_member("c")], x, y, 0.01)
    assert again.size(b, [], console).epochs == sized
    assert again.size(smoke_member("c"), [], console).epochs == 1
    assert "not even one epoch fits" in out.getvalue()


def test_a_budget_plans_past_an_outlying_calibration_and_keeps_a_margin_at_the_end(tmp_path):
    # A replayed run: five configurations alike but for dense width and learning
    # rate, calibrated as below; trial 3 really trained at about 600 images/s, the rest at
    # their calibration / 0.977. Planned from each calibration, it ran 10 minutes over.
    study = Study("s", tmp_path)
    calibrated = {"2": 683.2, "5": 742.2, "4": 655.7, "1": 722.0, "3": 888.5}
    real = {t: rate / 0.977 for t, rate in calibrated.items()} | {"3": 600.0}
    (study.dir / "retrain").mkdir(parents=True)
    (study.dir / "retrain" / BUDGET_FILE).write_text(json.dumps({"images_per_s": calibrated}))
    members = [replace(smoke_member(f"t{t}"), trial_id=t, epochs=40) for t in calibrated]
    y = np.zeros(60_000)
    budget = budget_for(study, members, None, y, 6626)  # recorded rates: no calibration
    left, out = 6626.0, io.StringIO()
    for i, member in enumerate(members):
        budget.deadline = time.monotonic() + left
        epochs = budget.size(member, members[i + 1 :], Console(file=out, width=200)).epochs
        assert epochs >= MIN_EPOCHS
        seconds = epochs * len(y) / real[member.trial_id]
        budget.trained(member, epochs, seconds)
        left -= seconds
    assert 0 < left < 0.1 * 6626  # within the budget, and most of it used
    assert "planned to use 90% of it" in out.getvalue().splitlines()[-1]


def test_the_last_member_is_planned_again_after_each_epoch(tmp_path):
    d = data.load()
    x, y = d.x_train[:512], d.y_train[:512]
    study, out = Study("s", tmp_path), io.StringIO()
    console = Console(file=out, width=200)
    first, last = smoke_member("a"), smoke_member("b")  # 3 epochs at most each
    budget = budget_for(study, [first, last], x, y, 3600)
    assert budget.size(first, [last], console).epochs == 3
    budget.deadline = time.monotonic()
    assert budget.replan(first, 1, 0.01) == 3  # not the last: the rest are sized around it
    # A calibration 1000x too slow plans the last member one epoch.
    budget.rates = {k: v / 1000 for k, v in budget.rates.items()}
    budget.deadline = time.monotonic() + 1.5 / 0.9 * budget.epoch_seconds([last])
    planned = budget.size(last, [], console)
    budget.deadline = time.monotonic() + 3600
    assert planned.epochs == 1
    progress = EpochProgress(console, "[2/2] b", planned.epochs, [], {"start": 0, "epochs": 0})
    train_member(study, planned, x, y, progress, budget=budget)
    # Trained at its real speed: the time left fits its 3 epochs, and the schedule followed.
    assert "b takes" in out.getvalue() and "-> 3 epochs instead of 1" in out.getvalue()
    manifest = json.loads((member_dir(study, "b") / MANIFEST).read_text())
    recorded = json.loads((study.dir / "retrain" / BUDGET_FILE).read_text())
    assert manifest["epochs"] == recorded["epochs"]["b"] == progress.epochs == 3
    assert recorded["last_plans"] == [1, 3]
    # With the time gone after its first epoch, it stops there.
    late = budget_for(Study("t", tmp_path), [last], x, y, 3600)
    assert late.size(last, [], console).epochs == 3
    late.deadline = time.monotonic()
    progress = EpochProgress(console, "[1/1] b", 3, [], {"start": 0, "epochs": 0})
    train_member(Study("t", tmp_path), last, x, y, progress, budget=late)
    assert json.loads((member_dir(Study("t", tmp_path), "b") / MANIFEST).read_text())["epochs"] == 1


def test_a_budget_too_short_for_every_member_leaves_the_last_ranked_out(tmp_path):
    d = data.load()
    x, y = d.x_train[:512], d.y_train[:512]
    study = Study("s", tmp_path)
    a, b, c = (replace(smoke_member(name), epochs=12) for name in "abc")
    budget = budget_for(study, [a, b, c], x, y, 3600)
    # Planned for 90% of the time (no member has trained yet), time for 8.8 epochs of one
    # member: 2 each for three, 4 each for two, both under MIN_EPOCHS, so `a` trains alone
    # (the last member too, but the margin counts once).
    budget.deadline = time.monotonic() + 9.8 * budget.epoch_seconds([a])
    out = io.StringIO()
    assert budget.size(a, [b, c], Console(file=out, width=200)).epochs == 8
    assert "b, c left out" in out.getvalue()
    assert budget.size(b, [c], Console(file=out)).epochs == 0
    recorded = json.loads((study.dir / "retrain" / BUDGET_FILE).read_text())
    assert recorded["epochs"] == {"a": 8, "b": 0, "c": 0}
    # With time for MIN_EPOCHS each, all three train.
    roomy = budget_for(Study("t", tmp_path), [a, b, c], x, y, 3600)
    roomy.deadline = time.monotonic() + (3 * MIN_EPOCHS + 0.8) / 0.9 * roomy.epoch_seconds([a])
    assert roomy.size(a, [b, c], Console(file=out)).epochs == MIN_EPOCHS


def test_a_resumed_run_does_not_train_a_member_its_budget_left_out(finished_study, tmp_path):
    study = Study("smoke", copy_of(finished_study, tmp_path))
    member = plan_members(study, top=1, seeds=1, epochs=12)[0]
    path = study.dir / "retrain" / BUDGET_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    # Recorded by the run's first part: its rate (so no calibration) and 0 epochs.
    path.write_text(
        json.dumps({"images_per_s": {member.trial_id: 1000.0}, "epochs": {member.name: 0}})
    )
    out = io.StringIO()
    retrain(study, [member], Console(file=out, width=200), time_budget=3600)
    assert "left out by the time budget" in out.getvalue()
    assert not member_dir(study, member.name).exists()


def test_the_epoch_line_says_which_members_its_eta_covers():
    out = io.StringIO()
    clock = {"start": 0.0, "epochs": 0}
    lines = []
    for rest in ([3, 3], []):
        progress = EpochProgress(Console(file=out, width=200), "[1/3] a", 3, rest, clock)
        progress.on_epoch_end(0, {"loss": 0.5, "accuracy": 0.9})
        lines.append(out.getvalue().splitlines()[-1])
    assert lines[0].endswith("(this member and 2 more)") and "epoch 1/3" in lines[0]
    assert lines[1].endswith("(this member)")


def test_the_eta_of_a_resumed_member_counts_only_the_epochs_it_has_left():
    out = io.StringIO()
    # One epoch in this process took a minute; the backup had the first 24 of 40.
    clock = {"start": time.monotonic() - 60, "epochs": 0}
    progress = EpochProgress(Console(file=out, width=200), "[1/1] a", 40, [], clock)
    progress.on_epoch_end(24, {"loss": 0.5, "accuracy": 0.9})
    assert "epoch 25/40" in out.getvalue() and "ETA 15.0 min" in out.getvalue()


def test_a_study_older_than_a_schema_key_retrains_with_its_default(finished_study, tmp_path):
    logs = copy_of(finished_study, tmp_path)
    study = Study("smoke", logs)
    for path in study.tuner_dir.glob("trial_*/trial.json"):  # as recorded before `residual`
        trial = json.loads(path.read_text())
        del trial["hyperparameters"]["values"]["residual"]
        path.write_text(json.dumps(trial))
    member = plan_members(study, top=1, seeds=1, epochs=1)[0]
    assert member.config["residual"] is False
    d = data.load()
    train_member(study, member, d.x_train[:256], d.y_train[:256], Recorder())
    assert (member_dir(study, member.name) / MODEL_FILE).exists()
