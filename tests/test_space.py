from __future__ import annotations

import keras_tuner as kt
import pytest

from search import space
from search.space import SpaceError

BUILTIN = ("deep", "full", "quick", "residual", "seed_v1", "seed_v2", "smoke")


def write(tmp_path, text: str):
    path = tmp_path / "s.toml"
    path.write_text(text)
    return path


def test_builtin_spaces_are_found_and_valid():
    assert set(BUILTIN) <= set(space.builtin_spaces())
    for name in BUILTIN:
        s = space.load(name)
        assert s.description and s.name == name


def test_defaults_fill_missing_keys(tmp_path):
    s = space.load(str(write(tmp_path, "")))
    assert s.params["learning_rate"].fixed == 1e-3
    assert not any(p.tunable for p in s.params.values())
    assert s.size() == 1


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[model]\nfilterz = 3", r"\[model\] unknown key 'filterz' \(did you mean 'filters_"),
        ("[modle]\nblocks = 2", r"unknown table \[modle\] \(did you mean 'model'\?\)"),
        ('[model]\nblocks = "two"', r"\[model\] blocks: expected int, got 'two'"),
        ("[model]\nbatch_norm = 1", r"batch_norm: expected bool, got 1"),
        ("[train]\nlearning_rate = {min = 0.1, max = 0.01}", "min 0.1 is greater than max 0.01"),
        ("[train]\nbatch_size = {choice = []}", "choice must be a non-empty list"),
        (
            "[train]\nweight_decay = {min = 0.0, max = 0.1, sampling = 'log'}",
            "log sampling needs min > 0",
        ),
        (
            "[train]\nlearning_rate = {min = 0.01, max = 0.1, sampling = 'cubic'}",
            "sampling must be",
        ),
        ("[train]\noptimizer = {min = 1, max = 2}", "takes a value or a choice, not a range"),
        ('[train]\noptimizer = "adamax"', "'adamax' is not one of adam, adamw, sgd, rmsprop"),
        ("[model]\ndropout_dense = 1.0", r"1.0 is not in \[0, 1\)"),
        ("[model]\nblocks = {choice = [1, 1]}", "duplicate values"),
        ("[model]\nblocks = {min = 1}", "expected a value"),
        ("[model]\nblocks = {min = 1, max = 3, step = 0.5}", "step of an integer key"),
        ("[model]\nblocks = 2\nblocks = 3", "not valid TOML"),
        ("model = 3", "model must be a table"),
        (
            "[model]\nresidual = true\npadding = 'valid'",
            "no configuration can be built: residual blocks need padding = 'same'",
        ),
        (
            "[model]\nblocks = 4\nkernel_size = 5\npadding = 'valid'",
            "no configuration can be built: block 3 conv 1",
        ),
    ],
)
def test_every_mistake_is_one_clear_line(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(SpaceError, match=message) as e:
        space.load(str(path))
    assert str(path) in str(e.value) and "\n" not in str(e.value)


def test_unknown_space_name_lists_builtins():
    with pytest.raises(
        SpaceError, match="built-in spaces are deep, full, quick, residual, seed_v1, seed_v2, smoke"
    ):
        space.load("nope")


def test_sizes_count_conditional_filters(tmp_path):
    text = """
[model]
blocks = {choice = [1, 2]}
filters_1 = {choice = [8, 16]}
filters_2 = {choice = [16, 32, 64]}
[train]
batch_size = {min = 32, max = 128, step = 32}
"""
    s = space.load(str(write(tmp_path, text)))
    # blocks=1: 2 filter choices; blocks=2: 2*3; times 4 batch sizes.
    assert s.size() == (2 + 6) * 4
    assert space.load("smoke").size() == 4
    assert space.load("seed_v1").size() is None  # continuous learning rate


def test_register_declares_conditional_hyperparameters(tmp_path):
    text = "[model]\nblocks = {choice = [1, 2]}\nfilters_2 = {choice = [16, 32]}"
    s = space.load(str(write(tmp_path, text)))
    hp = kt.HyperParameters()
    values = s.register(hp)
    assert values["blocks"] == 1 and values["filters_2"] is None  # inactive with one block
    # As the oracle does for a trial with two blocks: values for the parent and the child.
    hp.values.update(blocks=2, filters_2=32)
    assert s.register(hp)["filters_2"] == 32


def test_edges_need_an_inside():
    s = space.load("seed_v1")
    assert s.params["learning_rate"].edges() == (1e-4, 1e-2)
    assert s.params["kernel_size"].edges() is None  # two values: both are edges
    assert s.params["optimizer"].edges() is None


def test_boolean_choice_stays_boolean():
    hp = kt.HyperParameters()
    values = space.load("seed_v2").register(hp)
    assert values["batch_norm"] is False


def test_unbuildable_combinations_are_named_up_front(tmp_path):
    text = '[model]\nblocks = {choice = [1, 3]}\nkernel_size = {choice = [3, 9]}\npadding = "valid"'
    warnings = space.load(str(write(tmp_path, text))).build_warnings()
    assert len(warnings) == 1
    assert "1 of 4 combinations of blocks, kernel_size cannot build" in warnings[0]
    assert "a 9x9 window does not fit the 1x1 map" in warnings[0]
    for name in BUILTIN:
        assert space.load(name).build_warnings() == []
