from __future__ import annotations

import keras
import keras_tuner as kt
import numpy as np
import pytest

from search import space
from search.data import load, split
from search.hypermodel import DigitsHyperModel, augment_batch, learning_rate, make_dataset

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


def test_dataset_batches_float_pixels_and_one_hot_labels():
    d = load()
    ds = make_dataset(d.x_test[:100], d.y_test[:100], 32)
    x, y = next(iter(ds))
    assert x.dtype.name == "float32" and x.shape == (32, 28, 28)
    np.testing.assert_array_equal(np.argmax(y, 1), d.y_test[:32])


def test_exponential_schedule_decays_once_per_epoch():
    config = {"learning_rate": 0.01, "schedule": "exponential", "decay_rate": 0.5}
    lr = learning_rate(config, steps=10, epochs=5)
    assert float(lr(9)) == pytest.approx(0.01) and float(lr(20)) == pytest.approx(0.0025)


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
