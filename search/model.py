"""A pure function from hyperparameter values to an (uncompiled) Keras model.

The model takes raw pixels, uint8 or float in 0..255, shaped [N, 28, 28], and scales them
itself, so an exported model accepts images as they come. It uses standard
Keras layers only: it saves and loads without this package.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import layers

from search.data import IMAGE_SHAPE, NUM_CLASSES
from search.space import unbuildable


def build_model(config: dict[str, Any], name: str = "digits_cnn") -> keras.Model:
    """Build the CNN described by `config` (the values of a space's parameters).

    Raises:
        ValueError: the configuration cannot be built (a feature map shrinks below the kernel).
    """
    problem = unbuildable(config)
    if problem:
        raise ValueError(problem)
    # Every layer but the softmax computes in the configuration's precision (the weights stay
    # float32 either way); the probabilities are always float32. Trials of studies searched
    # before the setting existed have no precision: they trained in float32.
    kw = {"dtype": config.get("precision", "float32")}
    inputs = keras.Input(shape=IMAGE_SHAPE, name="image")
    x = layers.Reshape((*IMAGE_SHAPE, 1), name="channel", **kw)(inputs)
    x = layers.Rescaling(1 / 255, name="scale", **kw)(x)
    bn = config["batch_norm"]
    for b in range(1, config["blocks"] + 1):
        for c in range(1, config["convs_per_block"] + 1):
            last = c == config["convs_per_block"]
            strides = 2 if config["downsample"] == "strided" and last else 1
            x = layers.Conv2D(
                config[f"filters_{b}"],
                config["kernel_size"],
                strides=strides,
                padding=config["padding"],
                use_bias=not bn,
                name=f"b{b}_conv{c}",
                **kw,
            )(x)
            x = _activate(x, bn, f"b{b}_conv{c}", kw)
        if config["downsample"] == "maxpool":
            x = layers.MaxPooling2D(2, name=f"b{b}_pool", **kw)(x)
        if config["dropout_conv"] > 0:
            x = layers.Dropout(config["dropout_conv"], name=f"b{b}_drop", **kw)(x)
    if config["head"] == "gap":
        x = layers.GlobalAveragePooling2D(name="gap", **kw)(x)
    else:
        x = layers.Flatten(name="flatten", **kw)(x)
    for d in range(1, config["dense_layers"] + 1):
        x = layers.Dense(config["dense_units"], use_bias=not bn, name=f"dense{d}", **kw)(x)
        x = _activate(x, bn, f"dense{d}", kw)
        if config["dropout_dense"] > 0:
            x = layers.Dropout(config["dropout_dense"], name=f"dense{d}_drop", **kw)(x)
    outputs = layers.Dense(
        NUM_CLASSES, activation="softmax", name="probabilities", dtype="float32"
    )(x)
    return keras.Model(inputs, outputs, name=name)


BN_MOMENTUM = 0.9  # Keras' 0.99 needs ~500 steps before its moving statistics can be used
# for inference; short searches (tens of steps per epoch) then score at chance level.


def _activate(x: Any, bn: bool, name: str, kw: dict[str, Any]) -> Any:
    if bn:
        x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn", **kw)(x)
    return layers.Activation("relu", name=f"{name}_relu", **kw)(x)
