"""Child process: a timm network with data-calibrated BatchNorm, written as a fixture (no TensorFlow here).

`python timm_reference.py NAME OUT_DIR SIZE` writes OUT_DIR/NAME.safetensors (timm's state dict) and
OUT_DIR/NAME.npz (`x` NHWC, `logits`), like the shared fixtures. Run apart from TensorFlow: the two
in one process crash on import order.
"""

import sys

import numpy as np
import timm
import torch
from safetensors.torch import save_file


def main(name: str, out: str, size: int) -> None:
    torch.manual_seed(0)
    model = timm.create_model(name).eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):  # statistics from data: activations stay O(1)
                module.reset_running_stats()
                module.momentum = None
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0, 0.1)
        model.train()
        model(torch.randn(8, 3, size, size))
        model.eval()
        x = torch.randn(2, 3, size, size)
        logits = model(x).numpy()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, f"{out}/{name}.safetensors")
    np.savez(f"{out}/{name}.npz", x=x.numpy().transpose(0, 2, 3, 1), logits=logits)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
