"""The export gate measures what float32 cannot avoid and refuses what computes something else (#34:
an absolute 1e-5 on probabilities refused 1 in 5 early checkpoints that agreed on every top-1)."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import randomize
from test_timm_format import calibrate

import keras_models as km
from keras_models.export.measure import logit_error
from keras_models.export.release import TOLERANCE

SIZE = 64
FAMILIES = ["rexnet_100", "rexnet_lite_100", "tf_efficientnet_b0", "efficientnet_b0", "tf_efficientnet_lite0",
            "tf_efficientnetv2_b0"]


def _untrained(name: str, seed: int = 0):
    """An 'early checkpoint': weights far from converged, BatchNorm statistics from data."""
    model = km.create_model(name, num_classes=10, input_shape=(SIZE, SIZE, 3))
    x = np.random.default_rng(seed).uniform(0, 255, (8, SIZE, SIZE, 3)).astype("float32")
    randomize(model, seed)
    calibrate(model, x)
    return model, x


@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.slow
def test_batchnorm_folding_passes_the_gate_for_every_family(name):
    """What a SavedModel serves is the inference graph: BatchNorm folded into the convolutions."""
    model, x = _untrained(name)
    keras_probs = np.asarray(model.predict(x, verbose=0))
    served = np.asarray(km.inference_model(model).predict(x, verbose=0))
    assert logit_error(keras_probs, keras_probs) == 0.0
    assert logit_error(served, keras_probs) < TOLERANCE["saved_model"] / 10  # a tenfold margin


@pytest.mark.slow
def test_a_graph_that_computes_something_else_fails_the_gate():
    """timm's native EfficientNet-B0 and the TF one differ in padding and BatchNorm epsilon only."""
    tf_b0, x = _untrained("tf_efficientnet_b0")
    native = km.create_model("efficientnet_b0", num_classes=10, input_shape=(SIZE, SIZE, 3))
    native.set_weights(tf_b0.get_weights())
    error = logit_error(np.asarray(native.predict(x, verbose=0)), np.asarray(tf_b0.predict(x, verbose=0)))
    assert error > 10 * TOLERANCE["saved_model"], error
