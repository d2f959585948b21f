"""Child process: timm loads a checkpoint folder written by `save_timm` and prints nothing but logits.

`python timm_load.py FOLDER X.npy OUT.npy [HF_ID]`: with HF_ID, `timm.create_model("hf-hub:HF_ID",
pretrained=True)` (HF_ENDPOINT points at the stand-in); else the folder's file through
`pretrained_cfg_overlay` (with num_classes: else timm drops a head of another size).
X is NHWC in [0, 255]; it is normalised with config.json's mean/std.
"""

import json
import sys

import numpy as np
import timm
import torch


def main(folder: str, x_path: str, out: str, hf_id: str | None = None) -> None:
    config = json.load(open(f"{folder}/config.json"))
    if hf_id:
        model = timm.create_model(f"hf-hub:{hf_id}", pretrained=True)
    else:
        model = timm.create_model(config["architecture"], pretrained=True, num_classes=config["num_classes"],
                                  pretrained_cfg_overlay=dict(file=f"{folder}/model.safetensors",
                                                              num_classes=config["num_classes"]))
    cfg = config["pretrained_cfg"]  # the written normalisation (timm's own Lite cfg says 0.5 for TF's 127/128)
    x = np.load(x_path) / 255.0
    x = (x - np.array(cfg["mean"])) / np.array(cfg["std"])
    with torch.no_grad():
        logits = model.eval()(torch.from_numpy(x.transpose(0, 3, 1, 2)).float()).numpy()
    np.save(out, logits)


if __name__ == "__main__":
    main(*sys.argv[1:])
