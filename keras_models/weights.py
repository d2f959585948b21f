"""Weight converters (timm, official clovaai, lukemelas, keras.applications): key maps, conversion, checks.

The key mapping is derived from the same `NetSpec` that builds the model: each block lists
its weighted *roles* (expansion, depthwise, SE, projection), and each source only says how
it spells a role. Converting is two steps: checkpoint -> `{keras layer: [(key, array)]}`
(checks missing/unused keys), then assignment (checks every shape).
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
from tqdm.auto import tqdm

from keras_models.files import atomic_output, ensure_space, h5_bytes
from keras_models.layers import BlockSpec
from keras_models.provenance import check_architecture
from keras_models.spec import HEAD_LAYERS, NetSpec
from keras_models.state_dicts import CheckpointError, read_checkpoint, read_named_h5, write_named_h5

SOURCES = ("timm", "official", "lukemelas", "keras-applications")

# name -> (checkpoint array to Keras layout, Keras array back to the checkpoint's, Keras shape to the
# checkpoint's for messages): the same table converts in both directions.
_TRANSFORMS = {
    "id": (lambda a: a, lambda a: a, lambda s: s),
    "conv": (lambda a: a.transpose(2, 3, 1, 0), lambda a: a.transpose(3, 2, 0, 1), lambda s: (s[3], s[2], s[0], s[1])),
    "dw": (lambda a: a.transpose(2, 3, 0, 1), lambda a: a.transpose(2, 3, 0, 1), lambda s: (s[2], s[3], s[0], s[1])),
    "linear": (lambda a: a.T, lambda a: a.T, lambda s: (s[1], s[0])),
    "conv_as_linear": (lambda a: a[:, :, 0, 0].T, lambda a: a.T[:, :, None, None], lambda s: (s[1], s[0], 1, 1)),
}
_KIND_KEYS = {
    "conv": ((".weight", "conv"),),
    "dw": ((".weight", "dw"),),
    "conv_bias": ((".weight", "conv"), (".bias", "id")),
    "bn": ((".weight", "id"), (".bias", "id"), (".running_mean", "id"), (".running_var", "id")),
    "linear": ((".weight", "linear"), (".bias", "id")),
    "conv_as_linear": ((".weight", "conv_as_linear"), (".bias", "id")),
}


def block_roles(b: BlockSpec, dw_name: str) -> list[tuple[str, str, str]]:
    """(role, keras layer, kind) for every weighted layer of a block, in graph order."""
    p = b.name
    se = [("se_reduce", p + "se_reduce", "conv_bias")] + (
        [("se_bn", p + "se_bn", "bn")] if b.se_bn else []
    ) + [("se_expand", p + "se_expand", "conv_bias")] if b.se_ch else []
    project = [("pwl", p + "project_conv", "conv"), ("pwl_bn", p + "project_bn", "bn")]
    expand = [("exp", p + "expand_conv", "conv"), ("exp_bn", p + "expand_bn", "bn")]
    if b.fused:
        if b.exp_ch == b.in_ch and not b.edge:
            return [("conv", p + "project_conv", "conv"), ("conv_bn", p + "project_bn", "bn")]
        return expand + se + project
    dw = [("dw", p + dw_name, "dw"), ("dw_bn", p + "bn", "bn")]
    return (expand if b.exp_ch != b.in_ch else []) + dw + se + project


# How each source spells block roles; official ReXNet numbers its Sequential positionally.
_TIMM_REXNET = {"exp": "conv_exp.conv", "exp_bn": "conv_exp.bn", "dw": "conv_dw.conv", "dw_bn": "conv_dw.bn",
                "se_reduce": "se.fc1", "se_bn": "se.bn", "se_expand": "se.fc2",
                "pwl": "conv_pwl.conv", "pwl_bn": "conv_pwl.bn"}
_TIMM_EFFNET = {  # by timm block type: ds (no expansion), ir (inverted residual), er (fused), cn (conv)
    "ds": {"dw": "conv_dw", "dw_bn": "bn1", "se_reduce": "se.conv_reduce", "se_expand": "se.conv_expand",
           "pwl": "conv_pw", "pwl_bn": "bn2"},
    "ir": {"exp": "conv_pw", "exp_bn": "bn1", "dw": "conv_dw", "dw_bn": "bn2", "se_reduce": "se.conv_reduce",
           "se_expand": "se.conv_expand", "pwl": "conv_pwl", "pwl_bn": "bn3"},
    "er": {"exp": "conv_exp", "exp_bn": "bn1", "se_reduce": "se.conv_reduce", "se_expand": "se.conv_expand",
           "pwl": "conv_pwl", "pwl_bn": "bn2"},
    "cn": {"conv": "conv", "conv_bn": "bn1"},
}
_LUKEMELAS = {"exp": "_expand_conv", "exp_bn": "_bn0", "dw": "_depthwise_conv", "dw_bn": "_bn1",
              "se_reduce": "_se_reduce", "se_expand": "_se_expand", "pwl": "_project_conv", "pwl_bn": "_bn2"}


_OFFICIAL_SE = {"se_reduce": 0, "se_bn": 1, "se_expand": 3}  # fc = conv, BN, ReLU, conv, sigmoid


def _official_block_keys(b: BlockSpec, roles: list[str], index: int) -> dict[str, str]:
    """clovaai `features.{3+i}.out.{k}`: conv, BN, act triples; SE is one module with fc.{0,1,3}."""
    prefix, k, keys = f"features.{3 + index}.out.", 0, {}
    for role in roles:
        if role in ("se_reduce", "se_bn", "se_expand"):
            keys[role] = f"{prefix}{k}.fc.{_OFFICIAL_SE[role]}"
            if role == "se_expand":
                k += 2  # the SE module, then the ReLU6 that follows it
            continue
        keys[role] = f"{prefix}{k}"
        k += 1
        if role in ("exp_bn", "dw_bn") and not (role == "dw_bn" and b.se_ch):
            k += 1  # activation module after this BN (with SE, the ReLU6 comes after the SE)
    return keys


def source_mapping(net: NetSpec, source: str) -> list[tuple[str, str, str]]:
    """[(keras layer, source key prefix, kind)] for a whole network in `source` naming."""
    n, rows, rexnet = len(net.blocks), [], net.family == "rexnet"
    if source == "timm" and rexnet:
        rows += [("stem_conv", "stem.conv", "conv"), ("stem_bn", "stem.bn", "bn")]
    elif source == "official":
        rows += [("stem_conv", "features.0", "conv"), ("stem_bn", "features.1", "bn")]
    elif source == "timm":
        rows += [("stem_conv", "conv_stem", "conv"), ("stem_bn", "bn1", "bn")]
    elif source == "lukemelas":
        rows += [("stem_conv", "_conv_stem", "conv"), ("stem_bn", "_bn0", "bn")]
    else:
        raise ValueError(f"unknown checkpoint source {source!r}; choose one of {', '.join(SOURCES)}")

    for i, b in enumerate(net.blocks):
        roles = block_roles(b, net.style.dw_name)
        if source == "official":
            spell = _official_block_keys(b, [r for r, _, _ in roles], i)
        elif source == "timm" and rexnet:
            spell = {r: f"features.{i}.{s}" for r, s in _TIMM_REXNET.items()}
        elif source == "timm":
            if b.fused:
                kind = "cn" if b.exp_ch == b.in_ch and not b.edge else "er"
            else:
                kind = "ir" if b.exp_ch != b.in_ch else "ds"
            spell = {r: f"blocks.{b.stage}.{b.index}.{s}" for r, s in _TIMM_EFFNET[kind].items()}
        else:
            spell = {r: f"_blocks.{i}.{s}" for r, s in _LUKEMELAS.items()}
        missing = next((role for role, _, _ in roles if role not in spell), None)
        if missing:
            raise CheckpointError(f"a {source}-layout checkpoint cannot hold {net.name}: its '{missing}' layer has no "
                                  f"{source} key (a checkpoint of another family? pass the --model it was saved from)")
        rows += [(layer, spell[role], kind) for role, layer, kind in roles]

    if source == "timm" and rexnet:
        rows += [("top_conv", f"features.{n}.conv", "conv"), ("top_bn", f"features.{n}.bn", "bn"),
                 ("predictions", "head.fc", "linear")]
    elif source == "official":
        rows += [("top_conv", f"features.{3 + n}", "conv"), ("top_bn", f"features.{4 + n}", "bn")]
        if net.head_hidden:
            rows += [("head_hidden", "output.0", "conv_as_linear"), ("head_hidden_bn", "output.1", "bn"),
                     ("predictions", "output.4", "conv_as_linear")]
        else:
            rows += [("predictions", "output.1", "conv_as_linear")]
    elif source == "timm":
        rows += [("top_conv", "conv_head", "conv"), ("top_bn", "bn2", "bn"), ("predictions", "classifier", "linear")]
    else:
        rows += [("top_conv", "_conv_head", "conv"), ("top_bn", "_bn1", "bn"), ("predictions", "_fc", "linear")]
    return rows


Named = dict[str, list[tuple[str, np.ndarray, str]]]  # layer -> [(source key, source array, transform)]


def detect_source(state_dict: dict) -> str:
    keys = set(state_dict)
    for key, source in (("stem.conv.weight", "timm"), ("conv_stem.weight", "timm"),
                        ("_conv_stem.weight", "lukemelas"), ("features.0.weight", "official")):
        if key in keys:
            return source
    raise CheckpointError(
        f"cannot tell which implementation wrote this checkpoint (first keys: {sorted(keys)[:3]}); "
        f"pass --from {'|'.join(SOURCES)}"
    )


def convert_state_dict(state_dict: dict[str, np.ndarray], net: NetSpec, source: str) -> Named:
    """Checkpoint tensors -> per-layer lists in Keras weight order (shapes checked on assignment)."""
    named: Named = {}
    used = set()
    rows = source_mapping(net, source)
    for layer, prefix, kind in tqdm(rows, desc=f"convert {source}", unit="layer", disable=None, leave=False):
        entries = []
        for suffix, transform in _KIND_KEYS[kind]:
            key = prefix + suffix
            if key not in state_dict:
                raise CheckpointError(
                    f"checkpoint has no tensor '{key}' (needed by layer '{layer}' of {net.name}): "
                    f"wrong model, width or --from {source}?"
                )
            entries.append((key, np.asarray(state_dict[key]), transform))
            used.add(key)
        named[layer] = entries
    unused = [k for k in state_dict if k not in used and not k.endswith("num_batches_tracked")]
    if unused:
        raise CheckpointError(
            f"checkpoint tensor '{unused[0]}' has no place in {net.name} ({len(unused)} unused tensors): "
            f"wrong model, width or depth?"
        )
    return named


def to_state_dict(model: keras.Model, net: NetSpec, source: str = "timm") -> dict[str, np.ndarray]:
    """The inverse of `convert_state_dict`: `model`'s weights under `source`'s key names and tensor
    layouts (BatchNorm's `num_batches_tracked` included, as PyTorch writes it)."""
    layers = {layer.name: layer for layer in model.layers}
    state_dict = {}
    for layer_name, prefix, kind in source_mapping(net, source):
        layer = layers.get(layer_name)
        if layer is None or len(layer.weights) != len(_KIND_KEYS[kind]):
            raise CheckpointError(f"{model.name} has no layer '{layer_name}' as {net.name} builds it: "
                                  "a model built with include_top=False or features_only has no classifier to write")
        for (suffix, transform), variable in zip(_KIND_KEYS[kind], layer.weights):
            array = keras.ops.convert_to_numpy(variable).astype(np.float32)
            state_dict[prefix + suffix] = np.ascontiguousarray(_TRANSFORMS[transform][1](array))
        if kind == "bn":
            state_dict[prefix + ".num_batches_tracked"] = np.zeros((), np.int64)
    return state_dict


def h5_named(path: Path) -> Named:
    return {layer: [(key, arr, "id") for key, arr in ws] for layer, ws in read_named_h5(path).items()}


def assign(model: keras.Model, named: Named, *, strict: bool = True, new_head_ok: bool = False) -> None:
    """Set every weighted layer of `model` from `named`; one-line error on the first mismatch.

    strict: every checkpoint layer must exist in the model, except the classifier top when the
    model was built without it. new_head_ok: a classifier of another class count is left as
    initialised (fine-tuning from ImageNet weights).
    """
    weighted = [layer for layer in model.layers if layer.weights]
    pending = {}
    for layer in tqdm(weighted, desc=f"load {model.name}", unit="layer", disable=None, leave=False):
        if layer.name not in named:
            raise CheckpointError(f"checkpoint has no weights for layer '{layer.name}' of {model.name}")
        entries, variables = named[layer.name], layer.weights
        if len(entries) != len(variables):
            raise CheckpointError(
                f"layer '{layer.name}' has {len(variables)} weights but the checkpoint gives {len(entries)}"
            )
        arrays = []
        for (key, src, transform), var in zip(entries, variables):
            check_values(key, src)
            forward, _, inverse = _TRANSFORMS[transform]
            want = tuple(var.shape)
            value = forward(src) if src.ndim == len(inverse(want)) else src
            if tuple(value.shape) != want:
                if new_head_ok and layer.name == "predictions":
                    arrays = None
                    break
                raise CheckpointError(
                    f"tensor '{key}' has shape {tuple(src.shape)} in the checkpoint but "
                    f"{model.name} needs {inverse(want)} (layer '{layer.name}')"
                )
            arrays.append(value.astype(var.dtype))
        if arrays is not None:
            pending[layer] = arrays
    if strict:
        names = {layer.name for layer in model.layers}
        extra = [n for n in named if n not in names and n not in HEAD_LAYERS
                 and not n.startswith(("normalization", "rescaling"))]
        if extra:
            raise CheckpointError(f"checkpoint layer '{extra[0]}' has no place in {model.name}: wrong model?")
    for layer, arrays in pending.items():  # nothing changes unless everything fits
        layer.set_weights(arrays)


def keras_weight_shapes(path: Path) -> dict[str, list[tuple]]:
    """A Keras 3 `.weights.h5`: {layer key: [variable shapes]}; keys are class names with a counter
    (`conv2d`, `conv2d_1`, ...), as Keras numbers the layers it saves, in model order."""
    import h5py

    with h5py.File(path, "r") as f:
        layers = f.get("layers", {})
        return {key: [tuple(group["vars"][str(i)].shape) for i in range(len(group["vars"]))]
                for key, group in layers.items() if "vars" in group}


def check_keras_weights(model: keras.Model, path: Path) -> None:
    """One line naming the first layer whose weights the file lacks or gives in other shapes
    (instead of Keras' warning per layer and an error cut short)."""
    from keras.src.utils.naming import to_snake_case

    try:
        stored = keras_weight_shapes(path)
    except (OSError, KeyError) as e:
        raise CheckpointError(f"cannot read {path}: not a Keras .weights.h5 file ({e})") from None
    counts: dict[str, int] = {}
    for layer in model.layers:
        name = to_snake_case(layer.__class__.__name__)
        key = name if name not in counts else f"{name}_{counts[name] + 1}"
        counts[name] = counts.get(name, -1) + 1
        want = [tuple(w.shape) for w in layer.weights]
        if not want:
            continue
        have = stored.get(key)
        if have is None:
            raise CheckpointError(f"{path} has no weights for layer '{layer.name}' of {model.name} "
                                  "(a file of another model?)")
        if have != want:
            raise CheckpointError(f"{path} does not fit {model.name}: layer '{layer.name}' needs {want} but the "
                                  f"file holds {have} (another model, width or class count?)")


def check_values(key: str, array: np.ndarray) -> None:
    """Weights are finite floats: an integer tensor is not a weight, and NaN/inf would make every
    prediction NaN (refused here, naming the tensor, instead of cast or loaded)."""
    if not np.issubdtype(array.dtype, np.floating):
        raise CheckpointError(f"tensor '{key}' holds {array.dtype} values, not floating-point weights: "
                              "wrong or corrupt checkpoint")
    if not np.isfinite(array).all():
        raise CheckpointError(f"tensor '{key}' holds NaN or infinite values "
                              f"({int((~np.isfinite(array)).sum())} of {array.size}): refusing to load it")


def write_named(named: Named, path: Path) -> None:
    """Per-layer tensors as a keras.applications-style `.h5`, in Keras layouts (temp file, then rename)."""
    ensure_space(path.parent, h5_bytes(sum(a.nbytes for v in named.values() for _, a, _ in v)), path.name)
    with atomic_output(path, suffix=".h5") as tmp:
        write_named_h5({k: [(key, _TRANSFORMS[t][0](a)) for key, a, t in v] for k, v in named.items()}, tmp)


def read_named(path: Path, net: NetSpec, source: str | None = None, model: str | None = None) -> Named:
    """Any supported weights file -> per-layer weights: keras `.h5` by layer name, else a
    timm / official / lukemelas checkpoint converted through `net` (source detected if None).

    `model` (a registry name): a checkpoint that declares another architecture is refused.
    """
    if model is not None:
        check_architecture(path, model)
    if path.suffix == ".h5" or source == "keras-applications":
        return h5_named(path)
    state_dict = read_checkpoint(path)
    return convert_state_dict(state_dict, net, source or detect_source(state_dict))
