"""Child process of `keras-models benchmark --compare timm`: times timm's PyTorch twin.

Imports torch and timm only (never TensorFlow), sets the same thread count, and times exactly
like the parent (`warmup` untimed steps, then per-step times). On `cuda` the model and inputs are
channels-last (timm's GPU setting) and `.item()` waits for the device. The mixed policies run
under torch autocast (float16 training with a GradScaler). Prints one JSON line.
"""

from __future__ import annotations

import json
import platform
import sys
from contextlib import nullcontext

from benchmarks.speed import PeakRSS, cpu_name, timed  # numpy only at import: no TensorFlow here

INSTALL = "pip install -r requirements-bench.txt (torch, torchvision, timm; `make bench` does it)"


def main(job: dict) -> dict:
    try:
        import timm
        import torch
    except ImportError as e:
        raise SystemExit(f"--compare timm needs PyTorch and timm ({e.name} is missing): {INSTALL}") from None
    torch.set_num_threads(job["threads"])
    torch.manual_seed(0)
    device = torch.device(job.get("device", "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--compare timm: our backend runs on a GPU but PyTorch sees none (install a CUDA build)")
    memory = torch.channels_last if device.type == "cuda" else torch.contiguous_format
    amp = {"mixed_float16": torch.float16, "mixed_bfloat16": torch.bfloat16}.get(job.get("precision", "float32"))

    def autocast():
        return torch.autocast(device.type, dtype=amp) if amp else nullcontext()

    model = timm.create_model(job["model"], pretrained=False, num_classes=job["num_classes"])
    model = model.to(device, memory_format=memory)
    params = sum(p.numel() for p in model.parameters())
    rows = []
    for batch in job["batch_sizes"]:
        x = (torch.rand(batch, 3, job["img_size"], job["img_size"]) * 255).to(device, memory_format=memory)
        row = {"batch_size": batch, "params": params}
        if job["bench"] in ("infer", "both"):
            model.eval()

            def infer():
                with torch.inference_mode(), autocast():
                    return model(x).sum().item()

            with PeakRSS() as rss:
                row["infer"] = timed(infer, job["warmup"], job["iters"])
            row["infer_rss"] = rss.mb
        if job["bench"] in ("train", "both"):
            model.train()
            optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
            scaler = torch.amp.GradScaler(device.type, enabled=amp == torch.float16)
            y = torch.randint(0, job["num_classes"], (batch,), device=device)
            loss_fn = torch.nn.CrossEntropyLoss()

            def train():
                optimizer.zero_grad(set_to_none=True)
                with autocast():
                    loss = loss_fn(model(x), y)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                return loss.item()

            with PeakRSS() as rss:
                row["train"] = timed(train, job["warmup"], job["iters"])
            row["train_rss"] = rss.mb
        rows.append(row)
    versions = {"torch": torch.__version__, "timm": timm.__version__, "python": platform.python_version()}
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()
    return {"rows": rows, "versions": versions, "device": name}


if __name__ == "__main__":
    print(json.dumps(main(json.loads(sys.argv[1]))))
