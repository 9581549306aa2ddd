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
