"""Child process of `keras-models benchmark --compare timm`: times timm's PyTorch twin.

Imports torch and timm only (never TensorFlow), sets the same thread count, and times exactly
like the parent (`warmup` untimed steps, then per-step times). Prints one JSON line.
"""

from __future__ import annotations

import json
import platform
import sys

from keras_models.benchmark import PeakRSS, timed  # numpy only at import: no TensorFlow here

INSTALL = "pip install -r requirements-bench.txt (torch, torchvision, timm; `make bench` does it)"


def main(job: dict) -> dict:
    try:
        import timm
        import torch
    except ImportError as e:
        raise SystemExit(f"--compare timm needs PyTorch and timm ({e.name} is missing): {INSTALL}") from None
    torch.set_num_threads(job["threads"])
    torch.manual_seed(0)
    model = timm.create_model(job["model"], pretrained=False, num_classes=job["num_classes"])
    params = sum(p.numel() for p in model.parameters())
    rows = []
    for batch in job["batch_sizes"]:
        x = torch.rand(batch, 3, job["img_size"], job["img_size"]) * 255
        row = {"batch_size": batch, "params": params}
        if job["bench"] in ("infer", "both"):
            model.eval()

            def infer():
                with torch.inference_mode():
                    return model(x).sum().item()

            with PeakRSS() as rss:
                row["infer"] = timed(infer, job["warmup"], job["iters"])
            row["infer_rss"] = rss.mb
        if job["bench"] in ("train", "both"):
            model.train()
            optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
            y = torch.randint(0, job["num_classes"], (batch,))
            loss_fn = torch.nn.CrossEntropyLoss()

            def train():
                optimizer.zero_grad(set_to_none=True)
                loss = loss_fn(model(x), y)
                loss.backward()
                optimizer.step()
                return loss.item()

            with PeakRSS() as rss:
                row["train"] = timed(train, job["warmup"], job["iters"])
            row["train_rss"] = rss.mb
        rows.append(row)
    versions = {"torch": torch.__version__, "timm": timm.__version__, "python": platform.python_version()}
    return {"rows": rows, "versions": versions}


if __name__ == "__main__":
    print(json.dumps(main(json.loads(sys.argv[1]))))
