"""How a configuration is built and trained: optimizer, schedule, augmentation, batch size.

`DigitsHyperModel` is keras-tuner's HyperModel for a `Space`: `build` declares the space's
hyperparameters and compiles the model, `fit` feeds a `tf.data` pipeline that batches, augments
(one random affine transform per image, optionally elastic, in a parallel map, off the
training thread) and prefetches. Retraining uses the same `compile_model`, `schedule_callbacks`
and `make_dataset`, so a configuration trains the same way in a search and after it.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import math
import sys
import time
import zlib
from collections.abc import Iterator
from typing import Any

import keras
import keras_tuner as kt
import numpy as np
import tensorflow as tf

from search.data import IMAGE_SHAPE, NUM_CLASSES
from search.model import build_model
from search.space import Space

EVAL_BATCH = 1000  # validation batches: larger is faster, memory is no concern at 28x28
SGD_MOMENTUM = 0.9
CALIBRATION_BATCHES = 20  # timed training steps (after 3 warm-up steps) per calibration


def steps_per_epoch(n_images: int, batch_size: int) -> int:
    return math.ceil(n_images / batch_size)


def learning_rate(config: dict[str, Any], steps: int, epochs: int) -> Any:
    """The rate `compile_model` starts with: a constant, the first of an exponential decay
    (lowered each epoch by `EpochDecay`), or a cosine schedule over `epochs`."""
    lr = config["learning_rate"]
    if config["schedule"] == "cosine":
        warmup = min(config["warmup_epochs"], epochs - 1) * steps
        return keras.optimizers.schedules.CosineDecay(
            lr * 0.01 if warmup else lr,
            decay_steps=max(epochs * steps - warmup, 1),
            warmup_target=lr if warmup else None,
            warmup_steps=warmup,
        )
    return lr


class EpochDecay(keras.callbacks.Callback):
    """The exponential schedule: the rate falls by `decay_rate` each epoch of the
    configuration's `epochs`, over a plan of `epochs` (a longer plan stretches the curve, a
    shorter one runs its first epochs), towards `floor`, the rate one epoch past the plan.

    As in the original write-up, per epoch. Training longer (a retraining given more time)
    stretches the same curve over its epochs, so it ends as low: a curve that reached its
    floor early would spend the extra epochs at a rate too small to learn. `epochs` may
    change while training (a time budget re-planning its last member), so each epoch's rate
    is one equal geometric step from the last epoch's rate to the floor over the epochs left:
    on a plan that never changes that is the plain curve, and on one that does, the curve
    bends without a jump. The last rate is the optimizer's own, which a resumed fit restores.
    """

    def __init__(self, config: dict[str, Any], epochs: int):
        super().__init__()
        self.config, self.epochs = config, epochs

    def floor(self) -> float:
        c = self.config
        return c["learning_rate"] * c["decay_rate"] ** min(c["epochs"], self.epochs)

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        if epoch == 0:
            return  # the optimizer starts at the configuration's rate
        # Read as Keras' own LearningRateScheduler does: a tf.distribute strategy mirrors it.
        last = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        steps_left = max(self.epochs - epoch + 1, 1)
        self.model.optimizer.learning_rate = last * (self.floor() / last) ** (1 / steps_left)


# Schedules set per epoch, whose plan may change while training (`EpochDecay`).
REPLANNABLE = ("constant", "exponential")


def schedule_callbacks(config: dict[str, Any], epochs: int) -> list[keras.callbacks.Callback]:
    """What a fit of `config` planned for `epochs` needs beside `compile_model`'s optimizer."""
    decay = [EpochDecay(config, epochs)] if config["schedule"] == "exponential" else []
    # Validation scores the averaged weights, the ones the fit ends with (Keras swaps them
    # in when it finishes), so a search ranks what retraining keeps.
    return decay + ([keras.callbacks.SwapEMAWeights()] if config["ema"] else [])


def compile_model(model: keras.Model, config: dict[str, Any], steps: int, epochs: int) -> None:
    """Compile with the optimizer, schedule and label smoothing of `config`."""
    lr = learning_rate(config, steps, epochs)
    wd = config["weight_decay"] or None
    ema = {"use_ema": bool(config["ema"]), "ema_momentum": config["ema"] or 0.99}
    optimizer = {
        "adam": lambda: keras.optimizers.Adam(lr, **ema),
        "adamw": lambda: keras.optimizers.AdamW(lr, weight_decay=wd or 0.004, **ema),
        "sgd": lambda: keras.optimizers.SGD(
            lr, momentum=SGD_MOMENTUM, nesterov=True, weight_decay=wd, **ema
        ),
        "rmsprop": lambda: keras.optimizers.RMSprop(lr, **ema),
    }[config["optimizer"]]()
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=config["label_smoothing"]),
        metrics=["accuracy"],
    )
    # Without a tf.distribute strategy Keras creates the optimizer's and the metrics'
    # variables inside the first traced step, with conditional initialisers whose graphs
    # TensorFlow keeps for the life of the process: memory that grew with every trial.
    # Created here, eagerly, they have none.
    x = np.zeros((1, *IMAGE_SHAPE), np.float32)
    y = np.zeros((1, NUM_CLASSES), np.float32)
    y_pred = model(x)
    model.compute_loss(x, y, y_pred)
    model.compute_metrics(x, y, y_pred)
    model.reset_metrics()
    optimizer.build(model.trainable_variables)


def augment_batch(images: tf.Tensor, config: dict[str, Any]) -> tf.Tensor:
    """One random affine transform (rotate, shear, zoom, shift) per image, zero fill, and with
    `elastic` a smooth random displacement of every pixel on top (Simard et al., 2003).

    A single resampling per image instead of one per Keras random layer, and constant fill:
    reflecting would mirror strokes into the border of a shifted digit.
    """
    n = tf.shape(images)[0]
    h, w = images.shape[1], images.shape[2]

    def uniform(limit: float) -> tf.Tensor:
        return tf.random.uniform([n], -limit, limit)

    theta = uniform(math.radians(config["rotation"]))
    shear = tf.tan(uniform(math.radians(config["shear"])))
    zoom = 1.0 + uniform(config["zoom"])
    tx, ty = uniform(config["translate"] * w), uniform(config["translate"] * h)
    # The transform maps output pixels back to input pixels: the inverse of
    # out = R(theta) @ Shear @ zoom * (in - centre) + centre + shift.
    cos, sin = tf.cos(theta), tf.sin(theta)
    m00, m01 = (cos + shear * sin) / zoom, (sin - shear * cos) / zoom
    m10, m11 = -sin / zoom, cos / zoom
    cx, cy = (w - 1) / 2, (h - 1) / 2
    ox, oy = cx + tx, cy + ty
    b0 = cx - (m00 * ox + m01 * oy)
    b1 = cy - (m10 * ox + m11 * oy)
    if config.get("elastic", 0.0) > 0:  # elastic distortion is off unless a config asks
        # TensorFlow's transform op takes no displacement per pixel, so the resampling is
        # done here: a few CPU seconds more per epoch of 55,000 images than the op.
        ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
        dx, dy = elastic_field(n, h, w, config["elastic"], config["elastic_sigma"])

        def at(a: tf.Tensor) -> tf.Tensor:
            return a[:, None, None]

        src_x = at(m00) * xs + at(m01) * ys + at(b0) + dx
        src_y = at(m10) * xs + at(m11) * ys + at(b1) + dy
        return bilinear_sample(images, src_x, src_y)
    zeros = tf.zeros_like(theta)
    transforms = tf.stack([m00, m01, b0, m10, m11, b1, zeros, zeros], axis=1)
    out = tf.raw_ops.ImageProjectiveTransformV3(
        images=images[..., None],
        transforms=transforms,
        output_shape=[h, w],
        fill_value=0.0,
        interpolation="BILINEAR",
        fill_mode="CONSTANT",
    )
    return out[..., 0]


def elastic_field(n: tf.Tensor, h: int, w: int, alpha: float, sigma: float) -> tuple:
    """Per-image displacements (dx, dy), each [n, h, w] pixels: uniform noise in [-1, 1]
    smoothed by a Gaussian of `sigma` pixels (zero beyond the edges), times `alpha`.

    The separable blur is two small matrix products: as a depthwise convolution with a 25-tap
    kernel it cost ~20 CPU seconds per epoch of 55,000 images on a 2-core AMD EPYC, as matrix
    products ~1.5.
    """

    def blur(size: int) -> np.ndarray:  # row i: the Gaussian centred on pixel i, cut at 3 sigma
        d = np.arange(size)[:, None] - np.arange(size)[None, :]
        radius = math.ceil(3 * sigma)
        t = np.arange(-radius, radius + 1)
        weights = np.exp(-(d**2) / (2 * sigma**2)) * (np.abs(d) <= radius)
        return (weights / np.exp(-(t**2) / (2 * sigma**2)).sum()).astype(np.float32)

    field = tf.random.uniform([n, 2, h, w], -1.0, 1.0)
    field = tf.matmul(tf.matmul(blur(h), field), blur(w))  # blur(w) is symmetric
    return alpha * field[:, 0], alpha * field[:, 1]


def bilinear_sample(images: tf.Tensor, x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
    """`images` [n, h, w] read at pixel coordinates (`x`, `y`), each [n, h, w], bilinearly,
    zero outside the image: what tf.raw_ops.ImageProjectiveTransformV3 does with constant fill,
    at any coordinates."""
    n = tf.shape(images)[0]
    h, w = images.shape[1], images.shape[2]
    # A zero border: every corner outside the image is clipped onto it.
    flat = tf.reshape(tf.pad(images, [[0, 0], [1, 1], [1, 1]]), [n, (h + 2) * (w + 2)])
    x0, y0 = tf.floor(x), tf.floor(y)
    fx, fy = x - x0, y - y0

    def at(yy: tf.Tensor, xx: tf.Tensor) -> tf.Tensor:
        yy = tf.clip_by_value(yy, -1.0, float(h)) + 1
        xx = tf.clip_by_value(xx, -1.0, float(w)) + 1
        index = tf.reshape(tf.cast(yy * (w + 2) + xx, tf.int32), [n, h * w])
        return tf.reshape(tf.gather(flat, index, batch_dims=1), [n, h, w])

    top = (1 - fx) * at(y0, x0) + fx * at(y0, x0 + 1)
    bottom = (1 - fx) * at(y0 + 1, x0) + fx * at(y0 + 1, x0 + 1)
    return (1 - fy) * top + fy * bottom


def augments(config: dict[str, Any]) -> bool:
    keys = ("rotation", "zoom", "translate", "shear", "elastic")
    return any(config.get(k, 0.0) > 0 for k in keys)


def make_dataset(
    x: np.ndarray,
    y: np.ndarray,
    batch_size: int,
    config: dict[str, Any] | None = None,
    seed: int | None = None,
) -> tf.data.Dataset:
    """Batches of (float pixels 0..255, one-hot labels); shuffled and augmented when training.

    Args:
        config: the trial's values; given, the data is shuffled and augmented as it says.
            None: evaluation order, no augmentation.
    """
    ds = tf.data.Dataset.from_tensor_slices((x, y))
    if config is not None:
        ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)

    def prepare(xb: tf.Tensor, yb: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        xb = tf.cast(xb, tf.float32)
        if config is not None and augments(config):
            xb = augment_batch(xb, config)
        return xb, tf.one_hot(tf.cast(yb, tf.int32), NUM_CLASSES)

    ds = ds.map(prepare, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
    # tf.data's autotuner runs a thread per iterator that sleeps between its tuning rounds,
    # longer and longer, and Keras makes a new iterator every epoch: freeing the old one
    # waits out that sleep with the whole process idle: up to 40% of an epoch on two cores, at
    # random (BENCHMARKS.md, tf.data's autotuning). Off, the AUTOTUNE values
    # above stay at tf.data's defaults (parallel calls: one per core), which keep up here.
    options = tf.data.Options()
    options.autotune.enabled = False
    return ds.with_options(options)


def images_per_second(config: dict[str, Any], x: np.ndarray, y: np.ndarray) -> float:
    """Training images per second of `config` on this machine, from a few seconds of steps.

    The same model, optimizer and input pipeline as a real fit; warm-up steps first, so
    tracing is not counted.
    """
    model = build_model(config, fused=True)
    batch = config["batch_size"]
    compile_model(model, config, steps=100, epochs=1)
    batches = iter(make_dataset(x, y, batch, config).repeat())
    for _ in range(3):
        model.train_on_batch(*next(batches))
    start = time.perf_counter()
    for _ in range(CALIBRATION_BATCHES):
        model.train_on_batch(*next(batches))
    return CALIBRATION_BATCHES * batch / (time.perf_counter() - start)


def execution_seed(seed: int, trial_id: str, execution: int) -> int:
    """A seed of one execution of one trial, stable across processes."""
    return zlib.crc32(f"{seed}/{trial_id}/{execution}".encode())


def release_memory() -> None:
    """Give freed heap back to the system between trials.

    keras-tuner clears the Keras session and collects garbage before each build, yet resident
    memory still grew trial after trial (keras-tuner #395): glibc keeps the freed arenas of
    each model's graphs and buffers. `malloc_trim` returns them (BENCHMARKS.md, memory).
    """
    gc.collect()
    if sys.platform.startswith("linux"):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


class DigitsHyperModel(kt.HyperModel):
    """Builds and trains the CNNs of a `Space`.

    Args:
        space: what to try.
        train_size: number of training images (sets steps per epoch for the schedules).
        max_epochs: epoch cap per trial; Hyperband passes its own epochs to `fit`.
        seed: the study's seed; each execution of each trial derives its own from it.
    """

    def __init__(self, space: Space, train_size: int, max_epochs: int | None, seed: int = 0):
        super().__init__(name=space.name)
        self.space = space
        self.train_size = train_size
        self.max_epochs = max_epochs
        self.seed = seed
        self._declare_only = False
        self.current_trial: kt.engine.trial.Trial | None = None
        self.fits: dict[str, int] = {}  # fits begun in this process, by trial id

    @contextlib.contextmanager
    def declaring(self) -> Iterator[None]:
        """While a tuner is constructed, `build` only declares the hyperparameters.

        keras-tuner builds the model at start-up just to discover the search space; the space
        declares everything itself, so the build would only cost time, and it would crash the
        tuner when the default configuration cannot be built.
        """
        self._declare_only = True
        try:
            yield
        finally:
            self._declare_only = False

    def epochs(self, config: dict[str, Any]) -> int:
        return min(config["epochs"], self.max_epochs or config["epochs"])

    def build(self, hp: kt.HyperParameters) -> keras.Model:
        config = self.space.register(hp)
        if self._declare_only:
            return None
        release_memory()
        try:
            # Trials save weights only (keras-tuner's checkpoints), which the standard layers
            # read alike, so they train with the fused batch norm.
            model = build_model(config, fused=True)
        except ValueError as e:
            raise kt.errors.FailedTrialError(f"cannot build this configuration: {e}") from None
        compile_model(
            model,
            config,
            steps_per_epoch(self.train_size, config["batch_size"]),
            self.epochs(config),
        )
        return model

    def fit(
        self,
        hp: kt.HyperParameters,
        model: keras.Model,
        x: np.ndarray,
        y: np.ndarray,
        validation_data: tuple[np.ndarray, np.ndarray],
        callbacks: list | None = None,
        epochs: int | None = None,
        **kwargs: Any,
    ) -> keras.callbacks.History:
        # keras-tuner hands each fit a callback holding the trial; progress reports read it
        # here, the same way on a single machine and on a worker of a distributed search.
        self.current_trial = next(
            (c.trial for c in callbacks or [] if getattr(c, "trial", None) is not None), None
        )
        config = hp.values
        trial_id = self.current_trial.trial_id if self.current_trial else ""
        execution = self.fits[trial_id] = self.fits.get(trial_id, -1) + 1
        # Executions of a trial are its seeds: each its own batch order, augmentation draws
        # and dropout masks, or their spread would understate seed noise. Derived from the
        # study's seed, the trial and the execution, so a rerun trial trains as it did.
        seed = execution_seed(self.seed, trial_id, execution)
        keras.utils.set_random_seed(seed)
        train = make_dataset(x, y, config["batch_size"], config, seed=seed)
        val = make_dataset(*validation_data, EVAL_BATCH)
        callbacks = [
            *(callbacks or []),
            *schedule_callbacks(config, self.epochs(config)),
            keras.callbacks.TerminateOnNaN(),
        ]
        kwargs.setdefault("verbose", 0)
        history = model.fit(
            train,
            validation_data=val,
            epochs=epochs or self.epochs(config),
            callbacks=callbacks,
            shuffle=False,
            **kwargs,  # `make_dataset` shuffles
        )
        losses = history.history.get("loss", [])
        bad = [i for i, v in enumerate(losses) if not math.isfinite(v)]
        first = kwargs.get("initial_epoch", 0)
        if bad:
            raise kt.errors.FailedTrialError(
                f"loss became {losses[bad[0]]} at epoch {bad[0] + 1 + first}"
            )
        return history
