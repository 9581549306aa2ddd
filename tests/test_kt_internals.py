"""keras-tuner's internals the toolkit relies on (search/kt_internals.py), checked against the
installed keras-tuner: a failure here names what a new release moved."""

from __future__ import annotations

import keras_tuner as kt
from keras_tuner.src import config as kt_config

from search import kt_internals


def oracle() -> kt.Oracle:
    return kt.oracles.RandomSearchOracle(objective=kt.Objective("val_accuracy", "max"))


def test_the_debug_switch_exists_and_is_turned_off():
    assert hasattr(kt_config, "DEBUG"), "keras_tuner.src.config.DEBUG is gone"
    kt_internals.quiet_failed_trials()
    assert kt_config.DEBUG is False


def test_the_retry_queue_is_a_list_the_oracle_hands_out_from():
    o = oracle()
    assert isinstance(getattr(o, "_retry_queue", None), list), "Oracle._retry_queue is gone"
    kt_internals.retry_later(o, "7")
    assert o._retry_queue == ["7"]
    kt_internals.drop_retry(o, "7")
    kt_internals.drop_retry(o, "7")  # a second time is harmless
    assert o._retry_queue == []


def test_a_method_is_replaced_on_one_object_only():
    o, other = oracle(), oracle()
    original = kt_internals.replace_method(o, "create_trial", lambda tuner_id: "mine")
    assert o.create_trial("t") == "mine" and original.__self__ is o
    assert "create_trial" in vars(o) and "create_trial" not in vars(other)
    assert kt.engine.trial.TrialStatus.IDLE == "IDLE"  # the status a waiting worker gets


def grid_oracle(folder) -> kt_internals.ResumableGridOracle:
    o = kt_internals.ResumableGridOracle(objective=kt.Objective("score", "max"), max_trials=10)
    hp = kt.HyperParameters()
    hp.Choice("a", [1, 2, 3])
    hp.Choice("b", ["x", "y"])
    o._set_project_dir(str(folder), "grid")
    o.update_space(hp)
    return o


def run_trials(o: kt.Oracle, n: int) -> list[tuple]:
    tried = []
    for _ in range(n):
        trial = o.create_trial("tuner0")
        if trial.status == "STOPPED":
            break
        tried.append((trial.hyperparameters["a"], trial.hyperparameters["b"]))
        o.update_trial(trial.trial_id, {"score": 1.0})
        trial.status = "COMPLETED"
        o.end_trial(trial)
        o.save()  # as the tuner does after each trial
    return tried


def test_a_reloaded_grid_oracle_carries_on_through_the_rest_of_its_grid(tmp_path):
    first = grid_oracle(tmp_path)
    before = run_trials(first, 2)
    again = grid_oracle(tmp_path)
    again.reload()  # as a fresh process does (keras-tuner #1055: it stopped here)
    after = run_trials(again, 10)
    assert len(before) == 2 and len(after) == 4
    assert sorted(before + after) == [(a, b) for a in (1, 2, 3) for b in ("x", "y")]
