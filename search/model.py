"""A pure function from hyperparameter values to an (uncompiled) Keras model.

The model takes raw pixels, uint8 or float in 0..255, shaped [N, 28, 28], and scales them
itself, so an exported model accepts images as they come. It uses standard Keras layers only,
so it saves and loads without this package; a model built for training swaps in
`FusedBatchNormalization`, the standard layer with a faster training pass, and is rebuilt with
standard layers (`rebuild`) before it is saved.
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf
from keras import layers

from search.data import IMAGE_SHAPE, NUM_CLASSES
from search.space import unbuildable


def build_model(
    config: dict[str, Any], name: str = "digits_cnn", fused: bool = False
) -> keras.Model:
    """Build the CNN described by `config` (the values of a space's parameters).

    Args:
        fused: batch norm as `FusedBatchNormalization`: for training, never for saving.

    Raises:
        ValueError: the configuration cannot be built (a feature map shrinks below the kernel).
    """
    problem = unbuildable(config)
    if problem:
        raise ValueError(problem)
    # Every layer but the softmax computes in the configuration's precision (the weights stay
    # float32 either way); the probabilities are always float32.
    kw = {"dtype": config["precision"]}
    inputs = keras.Input(shape=IMAGE_SHAPE, name="image")
    x = layers.Reshape((*IMAGE_SHAPE, 1), name="channel", **kw)(inputs)
    x = layers.Rescaling(1 / 255, name="scale", **kw)(x)
    norm = None
    if config["batch_norm"]:
        norm = FusedBatchNormalization if fused else layers.BatchNormalization
    for b in range(1, config["blocks"] + 1):
        x = _block(x, b, config, norm, kw)
        if config["downsample"] == "maxpool":
            x = layers.MaxPooling2D(2, name=f"b{b}_pool", **kw)(x)
        if config["dropout_conv"] > 0:
            x = layers.Dropout(config["dropout_conv"], name=f"b{b}_drop", **kw)(x)
    if config["head"] == "gap":
        x = layers.GlobalAveragePooling2D(name="gap", **kw)(x)
    else:
        x = layers.Flatten(name="flatten", **kw)(x)
    for d in range(1, config["dense_layers"] + 1):
        x = layers.Dense(config["dense_units"], use_bias=norm is None, name=f"dense{d}", **kw)(x)
        x = _activate(x, norm, f"dense{d}", kw)
        if config["dropout_dense"] > 0:
            x = layers.Dropout(config["dropout_dense"], name=f"dense{d}_drop", **kw)(x)
    outputs = layers.Dense(
        NUM_CLASSES, activation="softmax", name="probabilities", dtype="float32"
    )(x)
    return keras.Model(inputs, outputs, name=name)


def rebuild(model: keras.Model, config: dict[str, Any]) -> keras.Model:
    """`model`'s network built again from `config` (standard layers), holding its weights."""
    twin = build_model(config, name=model.name)
    twin.set_weights(model.get_weights())
    return twin


BN_MOMENTUM = 0.9  # Keras' 0.99 needs ~500 steps before its moving statistics can be used
# for inference; short searches (tens of steps per epoch) then score at chance level.


class FusedBatchNormalization(layers.BatchNormalization):
    """`BatchNormalization` whose training pass is TensorFlow's fused kernel.

    Keras 3 normalises with a chain of separate ops (mean, variance, scale, shift, and the
    gradient of each), every one a pass over the feature map; the fused kernel makes one. That
    made a training step of the presets' CNN about 1.5x faster on the 2-core VMs (BENCHMARKS.md,
    throughput). Same weights, same arithmetic up to float rounding (tests/test_model.py);
    inference, masks, frozen layers and other precisions take the standard layer's path.
    """

    def call(self, inputs: Any, training: bool | None = None, mask: Any = None) -> Any:
        rank = len(inputs.shape)
        if (
            not (training and self.trainable)
            or mask is not None
            or rank not in (2, 4)
            or self.axis not in (-1, rank - 1)
            or not (self.center and self.scale)
            or self.compute_dtype != "float32"
        ):
            return super().call(inputs, training=training, mask=mask)
        x = inputs if rank == 4 else inputs[:, None, None, :]  # the kernel takes NHWC only
        y, mean, variance = tf.compat.v1.nn.fused_batch_norm(
            x, self.gamma, self.beta, epsilon=self.epsilon, is_training=True
        )
        # The kernel hands back the unbiased variance; Keras averages the biased one.
        n = tf.cast(tf.size(x) // tf.shape(x)[-1], variance.dtype)
        variance = variance * (n - 1) / n
        for moving, batch in ((self.moving_mean, mean), (self.moving_variance, variance)):
            moving.assign(moving * self.momentum + batch * (1.0 - self.momentum))
        return y if rank == 4 else y[:, 0, 0, :]


def _block(x: Any, b: int, config: dict[str, Any], norm: type | None, kw: dict[str, Any]) -> Any:
    """Block `b`'s convs; with `residual`, its input (through a 1x1 conv where width or size
    change, as in He et al.'s ResNet) is added to the last conv's output before its ReLU."""
    shortcut, filters, n = x, config[f"filters_{b}"], config["convs_per_block"]
    for c in range(1, n + 1):
        strides = 2 if config["downsample"] == "strided" and c == n else 1
        name = f"b{b}_conv{c}"
        x = layers.Conv2D(
            filters,
            config["kernel_size"],
            strides=strides,
            padding=config["padding"],
            use_bias=norm is None,
            name=name,
            **kw,
        )(x)
        if config["residual"] and c == n:
            x = _normalize(x, norm, name, kw)
            if shortcut.shape[-1] != filters or strides > 1:
                shortcut = layers.Conv2D(
                    filters, 1, strides=strides, use_bias=norm is None, name=f"b{b}_proj", **kw
                )(shortcut)
                shortcut = _normalize(shortcut, norm, f"b{b}_proj", kw)
            x = layers.Add(name=f"b{b}_add", **kw)([x, shortcut])
            x = layers.Activation("relu", name=f"{name}_relu", **kw)(x)
        else:
            x = _activate(x, norm, name, kw)
    return x


def _normalize(x: Any, norm: type | None, name: str, kw: dict[str, Any]) -> Any:
    return x if norm is None else norm(momentum=BN_MOMENTUM, name=f"{name}_bn", **kw)(x)


def _activate(x: Any, norm: type | None, name: str, kw: dict[str, Any]) -> Any:
    x = _normalize(x, norm, name, kw)
    return layers.Activation("relu", name=f"{name}_relu", **kw)(x)
