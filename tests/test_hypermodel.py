from __future__ import annotations

import keras
import keras_tuner as kt
import numpy as np
import pytest
import tensorflow as tf

from search import space
from search.data import load, split
from search.hypermodel import (
    DigitsHyperModel,
    EpochDecay,
    augment_batch,
    bilinear_sample,
    elastic_field,
    learning_rate,
    make_dataset,
    schedule_callbacks,
)

NO_AUGMENT = {"rotation": 0.0, "zoom": 0.0, "translate": 0.0, "shear": 0.0}


def test_identity_transform_keeps_images():
    images = load().x_test[:8].astype(np.float32)
    out = augment_batch(images, NO_AUGMENT).numpy()
    np.testing.assert_allclose(out, images, atol=1e-3)


def test_augmentation_moves_digits_but_never_mirrors_border():
    images = load().x_test[:64].astype(np.float32)
    out = augment_batch(images, {**NO_AUGMENT, "translate": 0.2, "rotation": 20.0}).numpy()
    assert out.shape == images.shape
    assert np.abs(out - images).mean() > 5  # the digits moved
    # Constant fill: no new ink appears, the total stays close (a little may leave the frame).
    assert out.sum() <= images.sum() * 1.02


def test_sampler_matches_tensorflows_projective_transform_with_zero_fill():
    images = load().x_test[:16].astype(np.float32)
    rng = np.random.default_rng(0)
    # Rotations, zooms and shifts of several pixels: corners fall inside, on the border, out.
    a = rng.uniform(-0.5, 0.5, 16).astype(np.float32)
    m = np.stack([np.cos(a), np.sin(a), -np.sin(a), np.cos(a)], 1) * rng.uniform(0.8, 1.2, (16, 1))
    b = rng.uniform(-6, 6, (16, 2))
    ys, xs = np.mgrid[0:28, 0:28].astype(np.float32)
    src_x = m[:, 0, None, None] * xs + m[:, 1, None, None] * ys + b[:, 0, None, None]
    src_y = m[:, 2, None, None] * xs + m[:, 3, None, None] * ys + b[:, 1, None, None]
    transforms = np.concatenate(
        [m[:, :2], b[:, :1], m[:, 2:], b[:, 1:], np.zeros((16, 2))], 1
    ).astype(np.float32)
    expected = tf.raw_ops.ImageProjectiveTransformV3(
        images=images[..., None],
        transforms=transforms,
        output_shape=[28, 28],
        fill_value=0.0,
        interpolation="BILINEAR",
        fill_mode="CONSTANT",
    )[..., 0]
    got = bilinear_sample(images, src_x.astype(np.float32), src_y.astype(np.float32))
    np.testing.assert_allclose(got.numpy(), expected.numpy(), atol=0.05)


def test_elastic_field_is_smooth_and_of_the_asked_strength():
    tf.random.set_seed(0)
    dx, dy = elastic_field(256, 28, 28, alpha=34.0, sigma=4.0)
    dx, dy = dx.numpy(), dy.numpy()
    assert dx.shape == dy.shape == (256, 28, 28)
    # Simard's setting moves pixels by about a pixel and a half, neighbours almost alike.
    middle = dx[:, 8:20, 8:20]
    assert 0.8 < middle.std() < 2.5
    assert np.abs(np.diff(middle, axis=2)).mean() < 0.2 * middle.std()
    assert np.abs(elastic_field(64, 28, 28, 68.0, 4.0)[0]).mean() > 1.5 * np.abs(dx).mean()


def test_elastic_distortion_bends_strokes_the_affine_part_does_not():
    images = load().x_test[:64].astype(np.float32)
    tf.random.set_seed(1)
    bent = augment_batch(images, {**NO_AUGMENT, "elastic": 34.0, "elastic_sigma": 4.0}).numpy()
    assert np.abs(bent - images).mean() > 5
    assert bent.sum() == pytest.approx(images.sum(), rel=0.05)  # ink moves, little is lost
    assert bent.min() >= 0 and bent.max() <= 255


def test_dataset_batches_float_pixels_and_one_hot_labels():
    d = load()
    ds = make_dataset(d.x_test[:100], d.y_test[:100], 32)
    x, y = next(iter(ds))
    assert x.dtype.name == "float32" and x.shape == (32, 28, 28)
    np.testing.assert_array_equal(np.argmax(y, 1), d.y_test[:32])


def test_datasets_run_without_tf_data_autotuning():
    # Its tuning thread made every new epoch's iterator wait, idle (make_dataset).
    d = load()
    config = {"rotation": 10.0, "zoom": 0.1, "translate": 0.1, "shear": 0.0}
    for ds in (
        make_dataset(d.x_test[:64], d.y_test[:64], 32, config, seed=0),
        make_dataset(d.x_test[:64], d.y_test[:64], 32),
    ):
        assert ds.options().autotune.enabled is False


class Rates(keras.callbacks.Callback):
    """Records the rate each epoch trains at; `replan` maps an epoch to a new plan."""

    def __init__(self, decay: EpochDecay, replan: dict[int, int] | None = None):
        super().__init__()
        self.decay, self.replan, self.seen = decay, replan or {}, []

    def on_epoch_begin(self, epoch, logs=None):
        self.seen.append(float(self.model.optimizer.learning_rate))

    def on_epoch_end(self, epoch, logs=None):
        self.decay.epochs = self.replan.get(epoch, self.decay.epochs)
        self.model.stop_training = epoch + 1 >= self.decay.epochs


def rates(epochs: int, fit_epochs: int, replan: dict[int, int] | None = None) -> list[float]:
    """The rate of each epoch of a tiny model trained with the schedule planned for `epochs`."""
    config = {
        "learning_rate": 0.01,
        "schedule": "exponential",
        "decay_rate": 0.5,
        "epochs": 5,
        "ema": 0.0,
    }
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(keras.optimizers.Adam(learning_rate(config, steps=1, epochs=epochs)), "mse")
    (decay,) = schedule_callbacks(config, epochs)
    recorder = Rates(decay, replan)
    x, y = np.zeros((4, 2)), np.zeros(4)
    model.fit(x, y, epochs=fit_epochs, callbacks=[decay, recorder], verbose=0)
    return recorder.seen


def test_exponential_schedule_decays_once_per_epoch():
    assert rates(5, 5) == pytest.approx([0.01 * 0.5**e for e in range(5)], rel=1e-5)
    # A trial that runs fewer epochs follows the same curve: its first epochs.
    assert rates(2, 2) == pytest.approx([0.01, 0.005], rel=1e-5)


def test_longer_training_stretches_the_exponential_curve_to_end_as_low():
    seen = rates(10, 10)  # twice the configured epochs
    assert seen[2] == pytest.approx(0.005, rel=1e-5)  # after 2 of 10 epochs: 1 of 5
    assert seen[9] == pytest.approx(0.01 * 0.5 ** (9 / 2), rel=1e-5)  # the last, as 4.5 of 5


def test_a_plan_changed_while_training_bends_the_curve_to_its_new_end():
    longer = rates(10, 20, replan={3: 14})  # after 4 of 10 epochs: 14 in all
    assert len(longer) == 14 and longer[:4] == pytest.approx(rates(10, 10)[:4], rel=1e-5)
    steps = np.array(longer[1:]) / np.array(longer[:-1])
    assert np.all(steps < 1)  # still falling every epoch: no jump up where it bent
    # Equal steps from the fourth epoch's rate to the floor (0.01 * 0.5**5, one past the end).
    assert steps[3:] == pytest.approx((0.01 * 0.5**5 / longer[3]) ** (1 / 11), rel=1e-4)
    shorter = rates(10, 20, replan={3: 6})
    assert len(shorter) == 6 and shorter[5] * (shorter[5] / shorter[4]) == pytest.approx(
        0.01 * 0.5**5, rel=1e-4
    )


class PoisonWeights(keras.callbacks.Callback):
    """Turns the output layer's weights to NaN, as a diverging run would.

    Not the first conv's: on some CPUs oneDNN's ReLU maps NaN to 0, and the NaN never
    reaches the loss."""

    def on_train_batch_end(self, batch, logs=None):
        w = self.model.get_layer("probabilities").kernel
        w.assign(np.full(w.shape, np.nan, np.float32))


def test_nan_loss_fails_the_trial_at_once():
    s = space.load("smoke")
    sp = split(load(), val_size=100, train_size=256)
    hm = DigitsHyperModel(s, len(sp.y_train), max_epochs=5)
    hp = kt.HyperParameters()
    model = hm.build(hp)
    with pytest.raises(kt.errors.FailedTrialError, match="loss became nan at epoch 1"):
        hm.fit(
            hp,
            model,
            sp.x_train,
            sp.y_train,
            validation_data=(sp.x_val, sp.y_val),
            callbacks=[PoisonWeights()],
            epochs=5,
        )


class TrainedWeights(keras.callbacks.Callback):
    """The weights as trained at the end of each epoch (validation over, before the fit ends)."""

    def on_epoch_end(self, epoch, logs=None):
        self.weights = [w.numpy() for w in self.model.trainable_weights]


def test_averaged_weights_are_the_ones_validated_and_kept():
    # A search must rank the weights retraining keeps: with `ema`, the fit ends on the
    # average, and each epoch's validation scores that average, not the weights as trained.
    s = space.load("smoke").with_fixed("ema", 0.9)
    sp = split(load(), val_size=500, train_size=1024)
    hm = DigitsHyperModel(s, len(sp.y_train), max_epochs=2)
    hp = kt.HyperParameters()
    model = hm.build(hp)
    trained = TrainedWeights()
    history = hm.fit(hp, model, sp.x_train, sp.y_train, (sp.x_val, sp.y_val), callbacks=[trained])
    kept = model.evaluate(sp.x_val, keras.utils.to_categorical(sp.y_val, 10), verbose=0)[1]
    assert history.history["val_accuracy"][-1] == pytest.approx(kept, abs=1e-6)
    averaged = [w.numpy() for w in model.trainable_weights]
    assert not any(np.allclose(a, t) for a, t in zip(averaged, trained.weights, strict=True))


def test_each_execution_of_each_trial_has_its_own_stable_seed():
    from search.hypermodel import execution_seed

    seeds = {execution_seed(0, t, e) for t in ("0", "1", "12") for e in range(3)}
    assert len(seeds) == 9  # every execution of every trial apart
    assert execution_seed(0, "1", 2) == execution_seed(0, "1", 2)  # a rerun trains alike
    assert execution_seed(1, "1", 2) != execution_seed(0, "1", 2)  # another --seed differs
