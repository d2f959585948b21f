"""Child process of `keras-models benchmark --bench data --compare timm`: times timm's training loader.

torchvision's ImageFolder (PIL decode) with `timm.data.create_transform(is_training=True,
use_prefetcher=True)` (random resized crop, flip, `rand-mM-mstdS` RandAugment, uint8 out), a
DataLoader with one worker per core collating with `fast_collate` (or `FastCollateMixup` when
mixing): the CPU side of `timm/train.py` in its default prefetcher mode, which hands uint8 batches
to the GPU and normalises there. Imports torch, timm and numpy only (never TensorFlow), so it can
run under another interpreter. Prints one JSON line.
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
        from timm.data import FastCollateMixup, create_transform
        from timm.data.loader import fast_collate
        from torchvision.datasets import ImageFolder
    except ImportError as e:
        raise SystemExit(f"--compare timm needs PyTorch, torchvision and timm ({e.name} is missing): {INSTALL}") \
            from None
    torch.manual_seed(0)
    magnitude, mstd = job["randaugment"], job["randaugment_mstd"]
    auto_augment = (f"rand-m{magnitude}" + (f"-mstd{mstd}" if mstd else "")) if magnitude else None
    transform = create_transform(job["image_size"], is_training=True, auto_augment=auto_augment,
                                 interpolation="bilinear", re_prob=0.0, use_prefetcher=True)
    dataset = ImageFolder(job["folder"], transform=transform)
    workers = job["workers"]
    collate = fast_collate
    if job["mixup"] or job["cutmix"]:
        collate = FastCollateMixup(mixup_alpha=job["mixup"], cutmix_alpha=job["cutmix"],
                                   num_classes=len(dataset.classes))
    loader = torch.utils.data.DataLoader(dataset, batch_size=job["batch_size"], shuffle=True, drop_last=True,
                                         num_workers=workers, persistent_workers=workers > 0, collate_fn=collate)

    def batches():
        while True:
            yield from loader

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
