"""Child process of `keras-models benchmark --bench data --compare timm`: times timm's training loader.

torchvision's ImageFolder (PIL decode) with `timm.data.create_transform(is_training=True)` (random
resized crop, flip, `rand-mM-mstdS` RandAugment), a DataLoader with one worker per core, and
timm's `Mixup` on each batch when asked: what `timm/train.py` feeds a GPU. Imports torch, timm and
numpy only (never TensorFlow), so it can run under another interpreter. Prints one JSON line.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time

INSTALL = "pip install -r requirements-bench.txt (torch, torchvision, timm; `make bench` does it)"


def main(job: dict) -> dict:
    try:
        import timm
        import torch
        from timm.data import Mixup, create_transform
        from torchvision.datasets import ImageFolder
    except ImportError as e:
        raise SystemExit(f"--compare timm needs PyTorch, torchvision and timm ({e.name} is missing): {INSTALL}") \
            from None
    torch.manual_seed(0)
    magnitude, mstd = job["randaugment"], job["randaugment_mstd"]
    auto_augment = (f"rand-m{magnitude}" + (f"-mstd{mstd}" if mstd else "")) if magnitude else None
    transform = create_transform(job["image_size"], is_training=True, auto_augment=auto_augment,
                                 interpolation="bilinear", re_prob=0.0)
    dataset = ImageFolder(job["folder"], transform=transform)
    workers = job["workers"]
    loader = torch.utils.data.DataLoader(dataset, batch_size=job["batch_size"], shuffle=True, drop_last=True,
                                         num_workers=workers, persistent_workers=workers > 0)
    mix = None
    if job["mixup"] or job["cutmix"]:
        mix = Mixup(mixup_alpha=job["mixup"], cutmix_alpha=job["cutmix"], num_classes=len(dataset.classes))

    def batches():
        while True:
            for x, y in loader:
                yield mix(x, y) if mix else (x, y)

    stream = batches()
    for _ in range(job["warmup"]):
        next(stream)
    rates = []
    for _ in range(job["repeats"]):
        start = time.perf_counter()
        for _ in range(job["batches"]):
            next(stream)
        rates.append(job["batches"] * job["batch_size"] / (time.perf_counter() - start))
    return {"rates": rates, "median": statistics.median(rates), "timm": timm.__version__,
            "torch": torch.__version__, "workers": workers, "images": len(dataset)}


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # DataLoader workers each decode one image at a time
    print(json.dumps(main(json.loads(sys.argv[1]))))
