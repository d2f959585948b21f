"""The variants without shared fixtures against timm itself: parameter counts always, logits where
timm is installed (`make bench` installs it; skipped otherwise, as in `make test`)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest
from helpers import HELPERS, load_fixture

from keras_models.cost import count_params
from keras_models.models import get_entry
from keras_models.spec import build
from keras_models.state_dicts import read_checkpoint
from keras_models.weights import assign, convert_state_dict

# trainable parameters as timm counts them (timm 1.0.31, 1000 classes)
TIMM_PARAMS = {"efficientnet_es": 5_438_392, "efficientnet_em": 6_899_496, "efficientnet_el": 10_589_712,
               "tf_efficientnet_el": 10_589_712, "efficientnetv2_rw_t": 13_649_388, "efficientnetv2_rw_s": 23_941_296,
               "efficientnetv2_rw_m": 53_236_442, "efficientnetv2_s": 21_458_488, "efficientnet_b3": 12_233_232,
               "rexnetr_200": 16_522_432, "rexnet_130": 7_557_091}
# logits compared with timm's (measured here: 5.5e-6 .. 4.7e-5; benchmarks/results/timm_parity.csv)
PARITY = ("efficientnet_es", "efficientnet_em", "efficientnet_el", "tf_efficientnet_es", "tf_efficientnet_el",
          "efficientnetv2_rw_t", "efficientnetv2_rw_s", "efficientnet_b3", "efficientnet_lite0", "efficientnetv2_s",
          "rexnet_130", "rexnetr_200", "tf_efficientnet_b3", "tf_efficientnetv2_b3")


@pytest.mark.parametrize("name", sorted(TIMM_PARAMS))
@pytest.mark.slow
def test_variants_have_timms_parameter_count(name):
    model = build(get_entry(name).make_spec(), input_shape=(64, 64, 3), include_preprocessing=False)
    assert count_params(model, trainable_only=True) == TIMM_PARAMS[name]


TIMM_PYTHON = os.environ.get("KERAS_MODELS_TIMM_PYTHON") or (
    sys.executable if importlib.util.find_spec("timm") else None)


@pytest.mark.skipif(TIMM_PYTHON is None, reason="timm is not installed (`make bench` installs it; or point "
                    "KERAS_MODELS_TIMM_PYTHON at a Python that has it)")
@pytest.mark.parametrize("name", PARITY)
def test_logits_equal_timms(name, tmp_path):
    """timm's network (BatchNorm statistics from data, so a padding or epsilon slip shows), made in a
    child process, converted from its state dict, on an odd input size (161: TF SAME pads unevenly)."""
    made = subprocess.run([TIMM_PYTHON, str(HELPERS / "timm_reference.py"), name, str(tmp_path), "161"],
                          capture_output=True, text=True, timeout=600)
    assert made.returncode == 0, made.stderr[-2000:]
    x, expected = load_fixture(tmp_path, name)
    net = get_entry(name).make_spec()
    model = build(net, input_shape=(161, 161, 3), include_preprocessing=False, classifier_activation=None)
    assign(model, convert_state_dict(read_checkpoint(tmp_path / f"{name}.safetensors"), net, "timm"))
    assert np.abs(np.asarray(model.predict(x, verbose=0)) - expected).max() < 2e-4
