"""Run in its own process by test_optimize (importing tfmot switches tf.keras to Keras 2 for good):
for each registry name given, render the tf_keras twin, compare it with the Keras 3 model, and apply
every tfmot method. Prints one JSON line per model."""

import json
import sys
from pathlib import Path

import keras
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: make `helpers` importable
from helpers import randomize  # noqa: E402
from keras_models.factory import create_model
from keras_models.models import get_entry
from training.optimize import methods as M
from training.optimize.twin import build_twin, copy_weights

for name in sys.argv[1:]:
    keras.utils.set_random_seed(0)
    options = {"input_shape": (32, 32, 3), "num_classes": 10, "classifier_activation": None}
    model = create_model(name, **options)
    randomize(model)  # well-conditioned weights and BN statistics, so outputs compare meaningfully
    twin = build_twin(get_entry(name).make_spec(), **options)
    copy_weights(model, twin)
    x = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    ref = np.asarray(model(x, training=False))
    twin_diff = float(np.abs(twin(x, training=False).numpy() - ref).max())
    qat = M.apply_qat(twin)  # tfmot's [-6, 6] ranges (inference mode leaves them), then calibrated
    default_err = float(np.abs(qat(x, training=False).numpy() - ref).max())
    M.calibrate_ranges(qat, [x])
    qat_out = qat(x, training=False).numpy()
    bounds = {v.name[:-len("_min:0")]: v.numpy() for v in qat.weights if v.name.endswith("_min:0")}
    ranges = {name: (low, next(v.numpy() for v in qat.weights if v.name == f"{name}_max:0"))
              for name, low in bounds.items()}  # activation ranges, and weight ranges per channel
    again = create_model(name, **options)  # weights back out of the QAT wrappers, to Keras 3
    copy_weights(qat, again)
    roundtrip_diff = float(np.abs(np.asarray(again(x, training=False)) - ref).max())
    allocation = M.allocate_sparsity(twin, x, 0.6, block=4)  # one-shot scan, per-layer sparsities
    sizes = {layer.name: layer.kernel.numpy().size for layer in twin.layers if M.compressible(layer)}
    allocated = sum(sizes[n] * s for n, s in allocation.items()) / sum(sizes.values())
    pruned, _, _ = M.apply_pruning(twin, 0.5, steps=10)  # 1x1 convs become 2-D `Pointwise` while pruning
    pruned_diff = float(np.abs(pruned(x, training=False).numpy() - ref).max())  # nothing pruned yet
    unpruned = M.strip(pruned)
    stripped_diff = float(np.abs(unpruned(x, training=False).numpy() - ref).max())
    same_classes = [type(a).__name__ for a in unpruned.layers] == [type(b).__name__ for b in twin.layers]
    clustered = M.strip(M.apply_clustering(twin, 16))  # wraps (and then rewrites) the twin's own layers
    copy_weights(clustered, again)  # and back into Keras 3, where the exported model comes from
    top_values = len(set(again.get_layer("top_conv").kernel.numpy().ravel().tolist()))
    print(json.dumps({
        "name": name, "layers": len(model.layers), "twin_layers": len(twin.layers),
        "twin_diff": twin_diff,
        "qat_finite": bool(np.isfinite(qat_out).all()), "qat_shape": list(qat_out.shape),
        "roundtrip_diff": roundtrip_diff, "calibrated_err": float(np.abs(qat_out - ref).max()),
        "default_err": default_err, "ranges": len(ranges),
        "ranges_at_default": sum(bool(np.any((low == -6) & (high == 6))) for low, high in ranges.values()),
        "input_range": [float(b) for name, r in ranges.items() if name.startswith("quantize_layer") for b in r],
        "ref_max": float(np.abs(ref).max()),
        "pruned_layers": sum(type(layer).__name__ == "PruneLowMagnitude" for layer in pruned.layers),
        "pruned_diff": pruned_diff, "stripped_diff": stripped_diff, "stripped_classes_same": same_classes,
        "allocated": allocated, "allocation_range": [min(allocation.values()), max(allocation.values())],
        "cluster_values": M.unique_values(clustered), "keras3_top_conv_values": top_values,
    }), flush=True)
