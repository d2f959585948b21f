"""`keras-models train|eval|optimize|export` (also `python -m training ...`), found by the CLI as an entry point.

Every `TrainConfig` field is a flag (`image_size` -> `--image-size`), generated from the
dataclass so the two never drift; flags override `--config recipe.yaml`, which overrides the
defaults.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

from keras_models.arguments import OneLineParser, fraction, image_size, nonempty, nonnegative_int, positive_int
from keras_models.backend import require_tensorflow
from training.config import OPTIMIZERS, PRECISIONS, STRATEGIES, SWITCHES, TrainConfig

CHOICES = {"optimizer": OPTIMIZERS, "precision": PRECISIONS, "strategy": STRATEGIES, "jit_compile": SWITCHES}
HELP = {
    "model": "registry name, e.g. rexnet_100, tf_efficientnet_b0 (see `keras-models list`)",
    "weights": "imagenet or a weights file to start from (the classifier head is new)",
    "data": "digits | folder:PATH | tfds:NAME[/CONFIG] | tfrecord:TRAIN_GLOB[,VAL_GLOB]",
    "data_dir": "tensorflow-datasets data_dir",
    "manual_dir": "tensorflow-datasets manual_dir, for sets whose archives you download yourself",
    "out": "run directory: checkpoints, best.weights.h5, last.keras, metrics.csv, curves.png, logs/",
    "batch_size": "global batch (all replicas together)",
    "lr": "peak learning rate (default: the recipe's, scaled with the global batch)",
    "ema_decay": "weight EMA decay; evaluation and best.weights.h5 use the EMA weights (0 = off)",
    "jit_compile": "XLA: auto = on for GPU/TPU, off on CPU (where it is 5-18x slower here)",
    "strategy": "auto = multi_worker with TF_CONFIG, mirrored with >1 GPU, else one_device",
    "freeze_backbone": "train only the classifier head (BatchNorm frozen in inference mode)",
    "freeze_epochs": "with --freeze-backbone: release the backbone after this many epochs",
    "unfreeze_lr_scale": "LR factor once the backbone is released",
    "checkpoint_every": "steps between checkpoints (also one per epoch)",
    "randaugment": "RandAugment magnitude 1-10, ops drawn per image as timm does (0 = off)",
    "randaugment_mstd": "RandAugment magnitude noise std per op (timm's mstd, e.g. 0.5)",
    "worker_timeout": "multi_worker: seconds to wait for every worker to join before stopping (default 600)",
}


def _flag_type(annotation: str):
    base = annotation.replace(" | None", "")
    return {"str": str, "int": int, "float": float}.get(base)


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field; unset flags stay absent so YAML values survive."""
    parser.add_argument("--config", help="YAML recipe of TrainConfig fields (flags override it)")
    for f in dataclasses.fields(TrainConfig):
        if f.name == "extra":
            continue
        flag = "--" + f.name.replace("_", "-")
        kwargs = {"dest": f.name, "default": argparse.SUPPRESS, "help": HELP.get(f.name)}
        if f.type in ("bool", "bool | None"):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, **kwargs)
        elif f.name == "crop_scale":
            parser.add_argument(flag, type=float, nargs=2, metavar=("LO", "HI"), **kwargs)
        else:
            kind = _flag_type(f.type)
            if kind is None:
                raise TypeError(f"no flag type for {f.name}: {f.type}")
            parser.add_argument(flag, type=kind, choices=CHOICES.get(f.name), **kwargs)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    overrides = {k: v for k, v in vars(args).items() if k in names}
    if getattr(args, "config", None):
        return TrainConfig.from_yaml(args.config, **overrides)
    return TrainConfig.from_dict(overrides, origin="command line")


def cmd_train(args: argparse.Namespace) -> None:
    require_tensorflow("training (tf.distribute, tf.data, checkpoints)")
    from training.trainer import fit

    fit(config_from_args(args))


def cmd_eval(args: argparse.Namespace) -> None:
    require_tensorflow("eval (tf.data)")
    from training.evaluate import evaluate

    evaluate(model=args.model, weights=args.weights, data=args.data, image_size=args.image_size,
             crop_pct=args.crop_pct, batch_size=args.batch_size, val_split=args.val_split, seed=args.seed,
             data_dir=args.data_dir)


def cmd_optimize(args: argparse.Namespace) -> None:
    require_tensorflow("optimize (tfmot)")
    from training.optimize import optimize

    optimize(method=args.method, weights=args.weights, out=args.out, model=args.model, data=args.data,
             image_size=args.image_size, epochs=args.epochs, steps_per_epoch=args.steps_per_epoch,
             batch_size=args.batch_size, lr=args.lr, sparsity=args.sparsity, prune_block=args.prune_block,
             prune_allocation=args.prune_allocation, clusters=args.clusters, eval_images=args.eval_images,
             calibration_images=args.calibration_images, distill=args.distill)


def cmd_export(args: argparse.Namespace) -> None:
    require_tensorflow("export (SavedModel, TFLite)")
    from training.export_run import export

    export(weights=args.weights, model=args.model, labels=args.labels, formats=args.formats,
           tflite_quant=args.tflite_quant, data=args.data, calibration=args.calibration,
           calibration_images=args.calibration_images, eval_images=args.eval_images, image_size=args.image_size,
           crop_pct=args.crop_pct, out=args.out, name=args.name)


def cmd_prepare(args: argparse.Namespace) -> None:
    require_tensorflow("prepare (tf.data, TFRecord)")
    from training.prepare import prepare, print_summary

    summary = prepare(args.data, args.out, shards=args.shards, shard_mb=args.shard_mb, val_split=args.val_split,
                      seed=args.seed, data_dir=args.data_dir)
    print_summary(args.out, summary)


def cmd_data_service(args: argparse.Namespace) -> None:
    require_tensorflow("the tf.data service")
    from training import data_service

    if args.role == "dispatcher":
        data_service.serve("dispatcher", lambda: data_service.dispatcher(args.port, args.work_dir))
    else:
        data_service.serve("worker", lambda: data_service.worker(args.dispatcher, args.port, args.host, args.timeout))


def add_subcommands(sub) -> None:
    """Register `train`, `eval`, `prepare`, `optimize` and `export` on an argparse subparsers object."""
    p = sub.add_parser("train", help="train a model (tf.distribute, resumable); see `train --help`")
    add_config_arguments(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="top-1/top-5 of a weights file on a dataset's validation split")
    p.add_argument("--weights", required=True, help="weights file, e.g. runs/digits/best.weights.h5")
    p.add_argument("--model", help="default: from config.yaml beside the weights")
    p.add_argument("--data", help="default: the run's data (config.yaml), else digits")
    p.add_argument("--data-dir")
    p.add_argument("--image-size", type=image_size)
    p.add_argument("--crop-pct", type=fraction)
    p.add_argument("--batch-size", type=positive_int, default=128)
    p.add_argument("--val-split", type=float)
    p.add_argument("--seed", type=int)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("prepare", help="write a data source once as TFRecord shards (train-*, val-*, labels.txt)",
                       description="Read, check and write every image of a data source into TFRecord shards that "
                                   "`--data tfrecord:OUT/train-*,OUT/val-*` reads; unreadable files are named, "
                                   "not written; nothing appears under OUT until it is complete.")
    p.add_argument("--data", required=True, help="folder:PATH | digits | tfds:NAME[/CONFIG] | tfrecord:GLOB")
    p.add_argument("--out", type=nonempty, required=True, help="folder for the shards (local or a gs:// URL)")
    p.add_argument("--shards", type=positive_int, help="shards per split (default: from --shard-mb)")
    p.add_argument("--shard-mb", type=float, default=128.0, help="target shard size in MB (default 128)")
    p.add_argument("--val-split", type=float, default=0.2, help="held-out share when the data has no val split")
    p.add_argument("--seed", type=int, default=0, help="the split's and the training order's seed")
    p.add_argument("--data-dir", help="tensorflow-datasets data_dir")
    p.set_defaults(func=cmd_prepare)

    p = sub.add_parser("data-service", help="run a tf.data service dispatcher or worker for `train --data-service`")
    roles = p.add_subparsers(dest="role", required=True)
    d = roles.add_parser("dispatcher", help="the dispatcher: hands out work, one per cluster")
    d.add_argument("--port", type=positive_int, required=True)
    d.add_argument("--work-dir", help="journal the dispatcher's state here (it then survives a restart)")
    d.set_defaults(func=cmd_data_service)
    w = roles.add_parser("worker", help="a worker: runs the input pipeline, as many as the CPUs allow")
    w.add_argument("--dispatcher", required=True, help="HOST:PORT or grpc://HOST:PORT of the dispatcher")
    w.add_argument("--port", type=nonnegative_int, default=0, help="this worker's port (0: any free one)")
    w.add_argument("--host", default="localhost", help="the name the trainers reach this worker by")
    w.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the dispatcher")
    w.set_defaults(func=cmd_data_service)

    from training.optimize import ALLOCATIONS, METHODS

    p = sub.add_parser("optimize", help="QAT, pruning, clustering (tensorflow-model-optimization) of a trained run",
                       description="Fine-tune a trained run with tfmot (in a child process), convert to TFLite and "
                                   "measure accuracy, size, gzip size and latency against the source weights.")
    p.add_argument("--method", required=True, choices=METHODS)
    p.add_argument("--weights", required=True, help="a run's weights, e.g. runs/digits/best.weights.h5")
    p.add_argument("--out", required=True, help="new run directory for the optimized weights, TFLite and report")
    p.add_argument("--model", help="default: from config.yaml beside the weights")
    p.add_argument("--data", help="default: the run's data")
    p.add_argument("--image-size", type=image_size)
    p.add_argument("--epochs", type=positive_int, default=3, help="fine-tuning epochs (per phase for prune+qat)")
    p.add_argument("--steps-per-epoch", type=positive_int, help="default: one pass over the training split")
    p.add_argument("--batch-size", type=positive_int, default=64)
    p.add_argument("--lr", type=float, help="peak SGD LR, cosine to 0 (default: 1e-3 for qat, 5e-3 otherwise, "
                   "at batch 64)")
    p.add_argument("--sparsity", type=float, default=0.5,
                   help="prune: final fraction of zero weights over the prunable convs and dense layers")
    p.add_argument("--prune-allocation", choices=ALLOCATIONS, default="sensitivity",
                   help="prune: per-layer sparsities from a one-shot sensitivity scan (layers that matter "
                        "least lose most), or the same sparsity in every layer")
    p.add_argument("--prune-block", type=int, default=4,
                   help="prune: 1x1-conv and dense weights go in blocks of this many input channels, which "
                        "gzip packs (1 = any single weight)")
    p.add_argument("--clusters", type=int, default=16, help="cluster: distinct values per kernel")
    p.add_argument("--eval-images", type=nonnegative_int, default=0, help="validation images to measure on (0 = all)")
    p.add_argument("--calibration-images", type=positive_int, default=200)
    p.add_argument("--no-distill", dest="distill", action="store_false",
                   help="fine-tune on the labels instead of the source model's predictions")
    p.set_defaults(func=cmd_optimize)

    p = sub.add_parser("export", help="SavedModel for TF Serving, TFLite for Android, ONNX; measured",
                       description="Export a weights file as the next version of OUT/NAME, every format run on "
                                   "the evaluation images and compared with the Keras model.")
    p.add_argument("--weights", default="imagenet", help="a weights file (its run's config.yaml and labels.txt "
                   "are read when beside it), imagenet or none")
    p.add_argument("--model", help="registry name (default: from the run's config.yaml)")
    p.add_argument("--labels", help="class names, one per line (default: labels.txt beside the weights)")
    p.add_argument("--formats", default="saved_model,tflite", help="comma list of saved_model, tflite, onnx")
    p.add_argument("--tflite-quant", default="float32", help="comma list of float32, float16, dynamic, int8")
    p.add_argument("--data", help="evaluation data (default: the run's), e.g. digits, folder:PATH")
    p.add_argument("--calibration", help="int8 calibration data, its training split (default: --data)")
    p.add_argument("--calibration-images", type=positive_int, default=200)
    p.add_argument("--eval-images", type=positive_int, default=500, help="validation images to measure on")
    p.add_argument("--image-size", type=image_size)
    p.add_argument("--crop-pct", type=fraction)
    p.add_argument("--out", type=nonempty, default="saved_models",
                   help="model repository (TF Serving's model base path)")
    p.add_argument("--name", help="model name in the repository (default: the registry name)")
    p.set_defaults(func=cmd_export)


def main(argv: list[str] | None = None) -> int:
    from keras_models.cli import run_command

    parser = OneLineParser(prog="python -m training", description="keras-models trainer")
    add_subcommands(parser.add_subparsers(dest="command", required=True))
    return run_command(parser, argv)


if __name__ == "__main__":
    sys.exit(main())
