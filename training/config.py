"""What a training run is: one dataclass, loadable from YAML, overridable from the command line.

Fields left as None are filled by `resolve` from the model family's recipe (see `RECIPES`)
and the dataset's defaults; the resolved config is what `config.yaml` records.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from keras_models.backend import JIT_SETTINGS, PRECISIONS


def tf_config() -> dict:
    """TF_CONFIG as TensorFlow reads it (the cluster and this worker's task); {} when unset."""
    try:
        return json.loads(os.environ.get("TF_CONFIG", "{}"))
    except json.JSONDecodeError:
        raise ValueError("TF_CONFIG is not valid JSON") from None


def cluster_spec() -> dict:
    return tf_config().get("cluster", {})


def across_machines(strategy: str) -> bool:
    """Whether `strategy` trains across machines: multi_worker, or auto when TF_CONFIG names a cluster."""
    return strategy == "multi_worker" or strategy == "auto" and bool(cluster_spec())


class ConfigError(ValueError):
    """A config that cannot run, with what to change."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml.safe_load, except that a key given twice is an error (PyYAML keeps the last silently)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"key {key!r} is given twice",
                                                        key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


_TYPES = {"str": (str,), "int": (int,), "float": (int, float), "bool": (bool,)}


def _check_type(name: str, annotation: str, value, origin: str) -> None:
    """YAML values are checked against the field's annotation, naming the field (`epochs: true` is no int)."""
    optional = annotation.endswith(" | None")
    base = annotation.removesuffix(" | None")
    if value is None and optional:
        return
    allowed = _TYPES.get(base)
    if allowed is None:  # tuples and dicts are checked by validate() and their users
        return
    if (isinstance(value, bool) and bool not in allowed) or not isinstance(value, allowed):
        raise ConfigError(f"{origin}: {name} must be {'a' if base != 'int' else 'an'} {base}"
                          f"{' or null' if optional else ''}; got {value!r}")


@dataclass(frozen=True)
class Recipe:
    """Per-family defaults, taken from the reference trainers (see README, "Recipe")."""

    optimizer: str
    base_lr: float  # at `base_batch` images per step; scaled linearly with the global batch
    base_batch: int
    weight_decay: float
    warmup_epochs: float
    label_smoothing: float = 0.1


RECIPES = {
    # clovaai/rexnet README + timm: SGD-Nesterov lr 0.5 @ 512, wd 1e-5, 5 warm-up epochs, cosine, LS 0.1.
    "rexnet": Recipe("sgd", 0.5, 512, 1e-5, 5),
    # TF Model Garden EfficientNet: RMSprop lr 0.008 @ 128 (rho 0.9, momentum 0.9, eps 1e-3), 5 warm-up epochs.
    "efficientnet": Recipe("rmsprop", 0.008, 128, 1e-5, 5),
}

OPTIMIZERS = ("sgd", "rmsprop", "adamw")
# When a run picks another optimizer than its family's recipe: (lr @ 256 images, weight decay), timm-like.
OPTIMIZER_DEFAULTS = {"sgd": (0.1, 1e-5), "rmsprop": (0.016, 1e-5), "adamw": (1e-3, 0.05)}
STRATEGIES = ("auto", "one_device", "mirrored", "multi_worker", "tpu")
SWITCHES = JIT_SETTINGS


@dataclass
class TrainConfig:
    # what to train
    model: str = "rexnet_100"
    weights: str | None = None  # None (from scratch), "imagenet" or a weights file; the head is new
    data: str = "digits"  # digits | mnist5k | folder:PATH | tfds:NAME[/CONFIG] | tfrecord:GLOB
    data_dir: str | None = None  # tensorflow-datasets data_dir
    manual_dir: str | None = None  # tensorflow-datasets manual_dir (archives you downloaded yourself)
    out: str = "runs/train"
    num_classes: int | None = None  # from the data
    # input
    image_size: int | None = None  # model default
    crop_pct: float | None = None  # evaluation centre crop; model (or dataset) default
    val_split: float = 0.2  # when the data has no validation split: seeded, stratified hold-out
    crop_scale: tuple[float, float] | None = None  # random-resized-crop area range; dataset default
    hflip: bool | None = None  # dataset default (off for digits)
    randaugment: int = 0  # RandAugment magnitude 1-10 (0 = off), per image (timm's rand-mM)
    randaugment_mstd: float = 0.0  # std of the magnitude noise per op (timm's mstd, e.g. 0.5)
    mixup: float = 0.0  # Beta(alpha, alpha); 0 = off
    cutmix: float = 0.0
    # schedule and optimiser
    epochs: int = 15
    batch_size: int = 64  # global: all replicas together
    steps_per_epoch: int | None = None  # default: one pass over the training split
    optimizer: str | None = None
    lr: float | None = None  # peak LR; default recipe base_lr * batch_size / base_batch
    min_lr: float = 0.0
    warmup_epochs: float | None = None
    momentum: float = 0.9
    weight_decay: float | None = None  # decoupled; never on BatchNorm or biases
    label_smoothing: float | None = None
    ema_decay: float = 0.999  # 0 = off; evaluation and best.weights.h5 use the EMA weights
    dropout_rate: float | None = None  # head dropout; model default
    drop_path_rate: float | None = None  # stochastic depth; model default
    grad_clip: float = 0.0  # global-norm clip (0 = off)
    head_init_scale: float = 0.1  # a new classifier's kernel x this (timm --head-init-scale), see README
    # fine-tuning
    freeze_backbone: bool = False
    freeze_epochs: int | None = None  # with freeze_backbone: unfreeze after this many epochs
    unfreeze_lr_scale: float = 0.1
    # runtime
    strategy: str = "auto"
    precision: str = "float32"
    jit_compile: str = "auto"  # auto: XLA on GPU/TPU only (XLA-CPU depthwise convs are 5-18x slower)
    sync_bn: bool = False
    worker_timeout: float = 600.0  # multi_worker: seconds to wait for every worker to join, then stop
    data_service: str | None = None  # grpc://HOST:PORT: the training input runs on a tf.data service
    checkpoint_every: int = 200  # steps; also at every epoch end
    seed: int = 0
    extra: dict = field(default_factory=dict)  # free-form notes carried into config.yaml

    # --- loading and saving -------------------------------------------------------------
    @classmethod
    def from_yaml(cls, path: str | Path, **overrides) -> TrainConfig:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        try:
            data = yaml.load(path.read_text(), Loader=_UniqueKeyLoader) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path} is not valid YAML: {str(e).splitlines()[0]}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path} must hold a mapping of config fields")
        return cls.from_dict({**data, **overrides}, origin=str(path))

    @classmethod
    def from_dict(cls, data: dict, origin: str = "config") -> TrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(f"{origin}: unknown field(s) {unknown}; known: {sorted(names)}")
        data = dict(data)
        for f in dataclasses.fields(cls):
            if f.name in data:
                _check_type(f.name, f.type, data[f.name], origin)
        if data.get("crop_scale") is not None:
            data["crop_scale"] = tuple(float(v) for v in data["crop_scale"])
        return cls(**data).validate()

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        if d["crop_scale"] is not None:
            d["crop_scale"] = list(d["crop_scale"])
        return d

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def replace(self, **changes) -> TrainConfig:
        return dataclasses.replace(self, **changes).validate()

    # --- checks and defaults ------------------------------------------------------------
    def validate(self) -> TrainConfig:
        def one_of(name, allowed, allow_none=False):
            value = getattr(self, name)
            if not (value is None and allow_none) and value not in allowed:
                raise ConfigError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")

        one_of("optimizer", OPTIMIZERS, allow_none=True)
        one_of("precision", PRECISIONS)
        one_of("strategy", STRATEGIES)
        one_of("jit_compile", SWITCHES)
        positive = {"epochs": self.epochs, "batch_size": self.batch_size, "checkpoint_every": self.checkpoint_every,
                    "steps_per_epoch": 1 if self.steps_per_epoch is None else self.steps_per_epoch}
        for name, value in positive.items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name} must be a positive integer; got {value!r}")
        if not str(self.out).strip():
            raise ConfigError("out must name a run directory, e.g. runs/flowers; got an empty string")
        if self.image_size is not None and self.image_size < 32:
            raise ConfigError(f"image_size must be >= 32 (the nets downsample 32x); got {self.image_size}")
        if self.lr is not None and not self.lr > 0:
            raise ConfigError(f"lr must be > 0; got {self.lr}")
        if not 0 <= self.min_lr or (self.lr is not None and self.min_lr > self.lr):
            peak = f" (the peak lr is {self.lr:g})" if self.lr is not None else ""
            raise ConfigError(f"min_lr must be in [0, lr]: the schedule decays to it{peak}; got {self.min_lr}")
        if self.label_smoothing is not None and not 0 <= self.label_smoothing < 1:
            raise ConfigError(f"label_smoothing must be in [0, 1), e.g. 0.1; got {self.label_smoothing}")
        if not 0 <= self.ema_decay < 1:
            raise ConfigError(f"ema_decay must be in [0, 1); got {self.ema_decay}")
        if not 0 < self.val_split < 1:
            raise ConfigError(f"val_split must be in (0, 1); got {self.val_split}")
        if self.crop_pct is not None and not 0 < self.crop_pct <= 1:
            raise ConfigError(f"crop_pct must be in (0, 1]; got {self.crop_pct}")
        if self.crop_scale is not None and not 0 < self.crop_scale[0] <= self.crop_scale[1] <= 1:
            raise ConfigError(f"crop_scale must be two fractions 0 < lo <= hi <= 1; got {self.crop_scale}")
        if not 0 <= self.randaugment <= 10:
            raise ConfigError(f"randaugment magnitude must be 0-10; got {self.randaugment}")
        if not 0 <= self.randaugment_mstd <= 10:
            raise ConfigError(f"randaugment_mstd must be 0-10; got {self.randaugment_mstd}")
        if self.data_service and across_machines(self.strategy):
            raise ConfigError("--data-service with --strategy multi_worker (or auto with a TF_CONFIG cluster) is not "
                              "supported yet (two workers reading one job diverged to NaN in its test): use one "
                              "machine's GPUs (mirrored), or local input")
        if not self.worker_timeout > 0:
            raise ConfigError(f"worker_timeout must be > 0 seconds; got {self.worker_timeout}")
        if self.freeze_epochs is not None and not self.freeze_backbone:
            raise ConfigError("freeze_epochs needs freeze_backbone")
        return self

    def resolve(self, family: str, dataset_defaults: dict, num_classes: int, default_size: int,
                default_crop_pct: float) -> TrainConfig:
        """Fill every None from the family recipe and the dataset; the result is what runs."""
        recipe = RECIPES[family]
        optimizer = self.optimizer or recipe.optimizer
        if optimizer == recipe.optimizer:
            base_lr, weight_decay = recipe.base_lr / recipe.base_batch, recipe.weight_decay
        else:
            lr256, weight_decay = OPTIMIZER_DEFAULTS[optimizer]
            base_lr = lr256 / 256
        out = self
        fill = {
            "num_classes": num_classes,
            "image_size": dataset_defaults.get("image_size", default_size),
            "crop_pct": dataset_defaults.get("crop_pct", default_crop_pct),
            "crop_scale": tuple(dataset_defaults.get("crop_scale", (0.08, 1.0))),
            "hflip": dataset_defaults.get("hflip", True),
            "optimizer": optimizer,
            # Small datasets bring their own (stronger) decay for sgd/rmsprop; AdamW keeps its 0.05.
            "weight_decay": dataset_defaults.get("weight_decay", weight_decay) if optimizer != "adamw"
            else weight_decay,
            "label_smoothing": recipe.label_smoothing,
            "warmup_epochs": min(recipe.warmup_epochs, 0.1 * self.epochs),
        }
        out = dataclasses.replace(out, **{k: v for k, v in fill.items() if getattr(out, k) is None})
        if out.num_classes != num_classes:
            raise ConfigError(f"num_classes={out.num_classes} but the data has {num_classes} classes")
        if out.lr is None:
            out = dataclasses.replace(out, lr=base_lr * out.batch_size)
        return out.validate()
