from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from search import space
from search.data import load
from search.model import FusedBatchNormalization, build_model


def corner_config(s: space.Space, end: int) -> dict:
    """Every parameter at its first (end=0) or last (end=-1) value."""
    config = {}
    for p in s.params.values():
        if p.choice is not None:
            config[p.name] = p.choice[end]
        elif p.min is not None:
            config[p.name] = p.type(p.min if end == 0 else p.max)
        else:
            config[p.name] = p.fixed
    return config


@pytest.mark.parametrize(
    "name", ["deep", "full", "quick", "residual", "seed_v1", "seed_v2", "smoke"]
)
@pytest.mark.parametrize("end", [0, -1])
def test_each_builtin_space_builds_a_model_that_takes_raw_pixels(name, end):
    model = build_model(corner_config(space.load(name), end))
    images = load().x_test[:4]  # uint8, as a user has them
    probs = model.predict(images, verbose=0)
    assert probs.shape == (4, 10)
    np.testing.assert_allclose(probs.sum(axis=1), 1, rtol=1e-5)


def test_unbuildable_configuration_says_where():
    config = corner_config(space.load("smoke"), 0)
    config.update(blocks=3, kernel_size=9, padding="valid", filters_2=4, filters_3=4)
    with pytest.raises(ValueError, match="block 3 conv 1: a 9x9 window does not fit the 1x1 map"):
        build_model(config)


def test_layers_follow_the_configuration():
    config = corner_config(space.load("smoke"), 0)
    config.update(
        blocks=2,
        convs_per_block=2,
        filters_2=6,
        batch_norm=True,
        downsample="strided",
        dense_layers=1,
        dense_units=20,
        dropout_dense=0.5,
        head="gap",
    )
    model = build_model(config)
    convs = [layer for layer in model.layers if layer.name.endswith(("conv1", "conv2"))]
    assert [c.filters for c in convs] == [4, 4, 6, 6]
    assert [c.strides for c in convs] == [(1, 1), (2, 2), (1, 1), (2, 2)]
    assert sum("bn" in layer.name for layer in model.layers) == 5
    assert model.get_layer("dense1").units == 20


def test_residual_blocks_add_their_input_projected_where_the_width_changes():
    config = corner_config(space.load("smoke"), 0)
    config.update(
        blocks=3, convs_per_block=2, filters_1=4, filters_2=4, filters_3=8, padding="same"
    )
    config.update(residual=True, batch_norm=True, downsample="maxpool", head="gap")
    model = build_model(config)
    adds = [layer for layer in model.layers if layer.name.endswith("_add")]
    assert [a.name for a in adds] == ["b1_add", "b2_add", "b3_add"]
    # Block 1 widens 1 -> 4 channels and block 3 4 -> 8: projected; block 2 keeps 4: identity.
    assert sorted(layer.name for layer in model.layers if layer.name.endswith("_proj")) == [
        "b1_proj",
        "b3_proj",
    ]
    assert model.get_layer("b2_add").input[1] is model.get_layer("b1_pool").output
    assert model.predict(load().x_test[:2], verbose=0).shape == (2, 10)


def test_residual_blocks_need_same_padding():
    config = corner_config(space.load("smoke"), 0)
    config.update(residual=True, padding="valid")
    with pytest.raises(ValueError, match="residual blocks need padding = 'same'"):
        build_model(config)


@pytest.mark.parametrize("shape", [(16, 6, 6, 3), (16, 5)])  # after a conv, after a dense
def test_fused_batch_norm_trains_as_the_standard_layer(shape):
    x = tf.constant(np.random.default_rng(0).normal(2.0, 3.0, shape).astype("float32"))
    runs = []
    for layer in (keras.layers.BatchNormalization(), FusedBatchNormalization()):
        layer.build(shape)
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=True)
            loss = tf.reduce_sum(y**3)  # weighs the outputs unevenly
        grads = tape.gradient(loss, [x, *layer.trainable_weights])
        runs.append((y, *grads, *layer.non_trainable_weights, layer(x, training=False)))
    graph = tf.function(lambda x: layer(x, training=True)).get_concrete_function(x).graph
    assert "FusedBatchNormV3" in {op.type for op in graph.get_operations()}
    # outputs, gradients (input, gamma, beta), moving mean and variance, inference outputs
    for standard, fused in zip(*runs, strict=True):
        np.testing.assert_allclose(fused, standard, rtol=1e-4, atol=1e-4)
