"""Our models on a GPU (Keras 3 on JAX, XLA) against timm on the same GPU, with the same weights.

For each (our model, timm model) pair and each precision policy: timm's randomly initialised
model (BatchNorm statistics randomised too, so folding them is exercised) is saved as a state
dict, loaded into ours through the converter, and both run the same batch. The reference is timm
in float32 with TF32 off; the table gives ||ours - ref|| / ||ref|| of the logits and whether the
top-1 classes agree. Writes `gpu_parity.csv` into the folder given (default: here).

    KERAS_BACKEND=jax python benchmarks/gpu_parity.py OUT_DIR
"""

from __future__ import annotations

import csv
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # leave memory to PyTorch

import keras  # noqa: E402
import numpy as np  # noqa: E402
import timm  # noqa: E402
import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

import keras_models as km  # noqa: E402
from benchmarks.speed import device_name  # noqa: E402

PAIRS = (("rexnet_100", "rexnet_100"), ("tf_efficientnet_b0", "tf_efficientnet_b0"))
POLICIES = os.environ.get("POLICIES", "float32,mixed_bfloat16,mixed_float16").split(",")
BATCH, SIZE = int(os.environ.get("BATCH", 16)), int(os.environ.get("SIZE", 224))
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"  # CPU: to check this script without a GPU


def timm_reference(name: str, x: np.ndarray, path: Path) -> np.ndarray:
    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    model = model.to(DEVICE)
    with torch.no_grad():
        return model(torch.from_numpy(x).permute(0, 3, 1, 2).to(DEVICE)).float().cpu().numpy()


def main(out: Path) -> None:
    x = np.random.default_rng(0).normal(0, 1, (BATCH, SIZE, SIZE, 3)).astype(np.float32)  # normalised input
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp, open(out / "gpu_parity.csv", "w", newline="") as f:
        writer = None  # rows are written as they come: a run cut short keeps what it measured
        for ours, theirs in PAIRS:
            path = Path(tmp) / f"{theirs}.safetensors"
            ref = timm_reference(theirs, x, path)
            for policy in POLICIES:
                keras.config.set_dtype_policy(policy)
                model = km.create_model(ours, weights=str(path), include_preprocessing=False,
                                        classifier_activation=None, input_shape=(SIZE, SIZE, 3))
                for graph, net in (("plain", model), ("inference", km.inference_model(model))):
                    logits = np.asarray(net.predict(x, batch_size=BATCH, verbose=0), dtype=np.float32)
                    row = {"model": ours, "timm_model": theirs, "precision": policy, "graph": graph,
                           "rel_error": float(np.linalg.norm(logits - ref) / np.linalg.norm(ref)),
                           "max_abs_error": float(np.abs(logits - ref).max()),
                           "top1_agree": float((logits.argmax(-1) == ref.argmax(-1)).mean()),
                           "device": device_name(), "keras": keras.__version__, "backend": keras.backend.backend(),
                           "timm": timm.__version__, "torch": torch.__version__}
                    if writer is None:
                        writer = csv.DictWriter(f, fieldnames=list(row))
                        writer.writeheader()
                    writer.writerow(row)
                    f.flush()
                    print(f"{ours:<16}{policy:<16}{graph:<10} rel {row['rel_error']:.2e}  "
                          f"max {row['max_abs_error']:.2e}  top-1 agree {row['top1_agree']:.2f}", flush=True)
                keras.backend.clear_session()
    keras.config.set_dtype_policy("float32")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "."))
