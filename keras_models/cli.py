"""`keras-models` command line: list, info, convert, predict, export, verify, train, eval, optimize, benchmark.

Every expected failure (bad path, wrong checkpoint, offline download) ends as one line on
stderr and exit status 2; set KERAS_MODELS_DEBUG=1 to see the traceback instead.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# oneDNN kernels: 1.8-2x faster training and inference on this AMD x86 CPU, where TensorFlow leaves
# them off by default (it turns them on for Intel CPUs only). TF_ENABLE_ONEDNN_OPTS=0 opts out.
if platform.machine().lower() in ("x86_64", "amd64"):
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")


def _import_keras_quietly() -> None:
    """TensorFlow's C++ start-up chatter (absl, CUDA probes) goes to fd 2: hide it once."""
    if "keras" in sys.modules:
        return
    from keras_models.files import quiet_stderr

    with quiet_stderr():
        import keras

        if keras.backend.backend() == "tensorflow":  # device probing is where CUDA logs
            import tensorflow as tf

            tf.config.list_physical_devices()


class CLIError(Exception):
    """A user-facing error: printed as one line."""


def _cmd_list(args) -> None:
    from keras_models.registry import get_entry, list_models

    names = list_models(args.pattern, pretrained=args.pretrained)
    if not names:
        raise CLIError(f"no model matches {args.pattern!r}; try `keras-models list`")
    print(f"{'model':<22}{'size':>6}{'top-1':>8}  weights")
    for name in names:
        e = get_entry(name)
        top1 = f"{e.top1:.1f}" if e.top1 else "-"
        print(f"{name:<22}{e.spec().default_size:>6}{top1:>8}  {'imagenet' if e.pretrained else '-'}")


def _cmd_info(args) -> None:
    from keras_models.registry import model_info

    info = model_info(args.model)
    for key, value in info.items():
        if key == "params" or key == "params_with_bn_stats":
            value = f"{value:,}"
        elif key == "macs":
            value = f"{value / 1e9:.3f} G"
        print(f"{key:<22}{value}")


def _cmd_convert(args) -> None:
    from keras_models.files import atomic_output
    from keras_models.registry import get_entry
    from keras_models.spec import build
    from keras_models.weights import assign, read_named

    out = Path(args.output)
    if not out.name.endswith(".weights.h5"):
        raise CLIError(f"output {out} must end with .weights.h5 (the Keras 3 weights format)")
    entry = get_entry(args.model)
    net = entry.spec()
    named = read_named(Path(args.checkpoint), net, args.source)
    classes = named["predictions"][-1][1].shape[0] if "predictions" in named else 1000
    model = build(net, num_classes=classes, classifier_activation=None)
    assign(model, named, strict=True)
    with atomic_output(out, suffix=".weights.h5") as tmp:  # Keras insists on the suffix
        model.save_weights(tmp)
    print(f"wrote {out} ({args.model}, {classes} classes, {model.count_params():,} weights)")


def load_image(path: str | Path, size: int, crop_pct: float, interpolation: str):
    """The evaluation transform that `eval` and the serving signatures run (TensorFlow ops)."""
    import tensorflow as tf

    from training.data import center_crop

    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise CLIError(f"image {path} does not exist") from None
    try:
        image = tf.io.decode_image(data, channels=3, expand_animations=False)
    except tf.errors.InvalidArgumentError:
        raise CLIError(f"cannot read image {path}: not a JPEG/PNG/GIF/BMP image") from None
    return center_crop(tf.cast(image, tf.float32), size, crop_pct, interpolation).numpy()


def _cmd_predict(args) -> None:
    import numpy as np

    from keras_models.imagenet import decode_predictions
    from keras_models.registry import create_model, get_entry

    entry = get_entry(args.model)
    size = args.image_size or entry.spec().default_size
    crop_pct = args.crop_pct or entry.crop_pct
    images = np.stack([load_image(p, size, crop_pct, entry.interpolation) for p in args.images])
    model = create_model(args.model, weights=args.weights, input_shape=(size, size, 3))
    probs = model.predict(images, verbose=0)
    if probs.shape[-1] != 1000:
        top = np.argsort(probs, axis=-1)[:, ::-1][:, : args.top]
        for path, idx, row in zip(args.images, top, probs):
            print(f"{path}: " + ", ".join(f"class {i} {row[i]:.3f}" for i in idx))
        return
    for path, preds in zip(args.images, decode_predictions(probs, top=args.top)):
        print(path)
        for rank, (_, name, score) in enumerate(preds, 1):
            print(f"  {rank}. {name:<28} {score:.3f}")


def _cmd_export(args) -> None:
    from keras_models.export import export

    export(weights=args.weights, model=args.model, labels=args.labels, formats=args.formats,
           tflite_quant=args.tflite_quant, data=args.data, calibration=args.calibration,
           calibration_images=args.calibration_images, eval_images=args.eval_images, image_size=args.image_size,
           crop_pct=args.crop_pct, out=args.out, name=args.name)


def _cmd_verify(args) -> None:
    from keras_models.export import verify

    verify(args.version_dir, weights=args.weights)


def _ints(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _words(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def _cmd_benchmark(args) -> None:
    from keras_models.benchmark import BenchOptions, plot, ratios, run, write_csv

    options = BenchOptions(
        models=args.model, bench=args.bench, batch_sizes=args.batch_size, img_sizes=args.img_size,
        precision=args.precision, jit_compile=args.jit_compile, runtimes=args.runtime, graph=args.graph,
        compare=args.compare, threads=args.threads, warmup=args.warmup, iters=args.iters,
        peak_gflops=args.peak_gflops, command="keras-models " + " ".join(sys.argv[1:]))
    csv_path = Path(args.results_file)
    if csv_path.suffix != ".csv":
        raise CLIError(f"--results-file {csv_path} must end with .csv")
    rows = run(options, progress=lambda line: print(f"  {line}", flush=True))
    write_csv(rows, csv_path)
    chart = plot(rows, Path(args.plot) if args.plot else csv_path.with_suffix(".png"), options.command)
    print(f"{'impl':<19}{'model':<18}{'runtime':<12}{'batch':>6}{'px':>5}{'infer img/s':>13}{'ms':>9}"
          f"{'train img/s':>13}{'ms':>9}")
    for r in rows:
        def cell(key, spec):
            return format(r[key], spec) if r.get(key) is not None else "-"
        print(f"{r['impl']:<19}{r['model']:<18}{r['runtime']:<12}{r['infer_batch_size']:>6}{r['infer_img_size']:>5}"
              f"{cell('infer_samples_per_sec', '.1f'):>13}{cell('infer_step_time', '.1f'):>9}"
              f"{cell('train_samples_per_sec', '.1f'):>13}{cell('train_step_time', '.1f'):>9}")
    for line in ratios(rows):
        print(line)
    print(f"wrote {csv_path} and {chart}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="keras-models", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("list", help="registered models")
    p.add_argument("pattern", nargs="?", default="*", help="shell pattern, e.g. 'efficientnet*'")
    p.add_argument("--pretrained", action="store_true", help="only models with published weights")
    p.set_defaults(func=_cmd_list)

    p = sub.add_parser("info", help="input size, preprocessing, params, MACs, published accuracy")
    p.add_argument("model")
    p.set_defaults(func=_cmd_info)

    p = sub.add_parser("convert", help="convert a timm/official/lukemelas/keras-applications checkpoint")
    p.add_argument("checkpoint", help=".safetensors, .pth (read safely, no torch needed) or keras .h5")
    p.add_argument("--model", required=True)
    p.add_argument("--from", dest="source", choices=["timm", "official", "lukemelas", "keras-applications"],
                   help="naming of the checkpoint (detected when omitted)")
    p.add_argument("-o", "--output", required=True, help="output .weights.h5")
    p.set_defaults(func=_cmd_convert)

    p = sub.add_parser("predict", help="top-k ImageNet classes for image files")
    p.add_argument("images", nargs="+")
    p.add_argument("--model", default="efficientnet_lite0")
    p.add_argument("--weights", default="imagenet", help="imagenet or a weights file")
    p.add_argument("--image-size", type=int, default=None)
    p.add_argument("--crop-pct", type=float, default=None, help="centre-crop fraction (default: the model's)")
    p.add_argument("--top", type=int, default=5)
    p.set_defaults(func=_cmd_predict)

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
    p.add_argument("--calibration-images", type=int, default=200)
    p.add_argument("--eval-images", type=int, default=500, help="validation images to measure on")
    p.add_argument("--image-size", type=int)
    p.add_argument("--crop-pct", type=float)
    p.add_argument("--out", default="saved_models", help="model repository (TF Serving's model base path)")
    p.add_argument("--name", help="model name in the repository (default: the registry name)")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("verify", help="re-check an export version: serving contract, TFLite, ONNX vs Keras")
    p.add_argument("version_dir", help="e.g. saved_models/rexnet_100/1 (or saved_models/rexnet_100: the latest)")
    p.add_argument("--weights", help="Keras weights to compare with (default: the model card's)")
    p.set_defaults(func=_cmd_verify)

    p = sub.add_parser("benchmark", help="timm-style speed table (CSV + PNG), optionally against peers",
                       description="Time inference and/or a training step on synthetic images: warm-up, then "
                                   "repeated steps (median and 10th/90th percentiles), in columns named like timm's.")
    p.add_argument("--model", type=_words, default=["rexnet_100"], help="comma list of registry names")
    p.add_argument("--bench", default="both", help="infer, train or both")
    p.add_argument("--batch-size", type=_ints, default=[1, 32], help="comma list, e.g. 1,8,32,64")
    p.add_argument("--img-size", type=_ints, default=[224], help="comma list, e.g. 128,224,320")
    p.add_argument("--precision", default="float32", help="float32, mixed_float16 or mixed_bfloat16")
    p.add_argument("--jit-compile", default="auto", help="XLA: auto (GPU/TPU only), on or off")
    p.add_argument("--runtime", type=_words, default=["keras"],
                   help="comma list of keras, saved_model, tflite, tflite-int8")
    p.add_argument("--graph", default="inference",
                   help="keras inference graph: inference (BN folded, fused depthwise/SE units) or plain")
    p.add_argument("--compare", type=_words, default=[], help="keras.applications and/or timm, in the same run")
    p.add_argument("--threads", type=int, default=0, help="intra-op threads for TF, TFLite and torch (0: all cores)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--iters", type=int, default=10, help="timed steps per configuration")
    p.add_argument("--peak-gflops", type=float,
                   help="this CPU's float32 peak (benchmarks/fma_peak), for float32 runs' %% of peak")
    p.add_argument("--results-file", default="benchmark.csv", help="CSV to write; the chart goes beside it (.png)")
    p.add_argument("--plot", help="chart path (default: the results file with .png)")
    p.set_defaults(func=_cmd_benchmark)

    from training.cli import add_subcommands

    add_subcommands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_command(build_parser(), argv)


def run_command(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> int:
    """Parse and run; expected failures become one line on stderr and exit status 2."""
    args = parser.parse_args(argv)
    try:
        _import_keras_quietly()
        args.func(args)
    except KeyboardInterrupt:
        print("keras-models: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # every failure is one line unless debugging
        if os.environ.get("KERAS_MODELS_DEBUG"):
            raise
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        print(f"keras-models: error: {msg}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
