"""timm repos on the Hugging Face Hub (`hf://timm/rexnet_130.nav_in1k`): config and files via huggingface_hub.

A timm repo holds `config.json` (architecture, num_classes, pretrained_cfg) and
`model.safetensors`. Files come through `hf_hub_download`, so its cache (`HF_HOME`), offline mode
(`HF_HUB_OFFLINE=1`) and endpoint (`HF_ENDPOINT`) apply. Each cached blob is named by its ETag
(the sha256 of an LFS file, the git blob sha1 of a small one); it is re-hashed before use, and a
blob that no longer matches is downloaded again, never loaded.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import urllib.parse
from pathlib import Path

from keras_models.files import file_digest
from keras_models.registry import Pretrained

HF_PREFIX = "hf://"
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


class HubError(RuntimeError):
    """A Hub download failed or a file did not verify (the message is one line)."""


def parse(handle: str) -> tuple[str, str | None]:
    """`hf://org/name[@revision]` -> (repo id, revision)."""
    repo = handle[len(HF_PREFIX):] if handle.startswith(HF_PREFIX) else handle
    repo, _, revision = repo.partition("@")
    if repo.count("/") != 1 or not all(repo.split("/")):
        raise HubError(f"{handle!r} is not a Hub model: write hf://org/name, e.g. hf://timm/rexnet_130.nav_in1k")
    return repo, revision or None


def _blob_matches(path: Path) -> bool:
    """The blob's content still hashes to its ETag name (LFS sha256 or git blob sha1)."""
    name = path.resolve().name
    if len(name) == 64:
        return file_digest(path) == name
    if len(name) == 40:
        data = path.read_bytes()
        return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest() == name
    return True  # another ETag form: nothing to compare against


def download(repo: str, filename: str, revision: str | None = None) -> Path:
    """One verified file of a Hub repo (cache first; a blob that fails its hash is fetched again)."""
    try:
        import huggingface_hub  # noqa: F401
    except ImportError:
        raise HubError("hf:// needs huggingface_hub: pip install huggingface_hub") from None
    path = _hf_download(repo, filename, revision, force=False)
    if not _blob_matches(path):
        path = _hf_download(repo, filename, revision, force=True)
        if not _blob_matches(path):
            raise HubError(f"hf://{repo}/{filename} does not match its ETag after a fresh download: "
                           "the server sent a corrupted file")
    return path


def _hf_download(repo: str, filename: str, revision: str | None, force: bool) -> Path:
    from huggingface_hub import errors, hf_hub_download

    where = f"hf://{repo}/{filename}" + (f"@{revision}" if revision else "")
    offline = _offline() or not _reachable(_endpoint())  # huggingface_hub would retry for ~25 s
    try:  # the environment is read now, not at huggingface_hub's import
        return Path(hf_hub_download(repo, filename, revision=revision, force_download=force and not offline,
                                    endpoint=_endpoint(), cache_dir=_cache_home(), local_files_only=offline))
    except errors.LocalEntryNotFoundError:  # a subclass of EntryNotFoundError: caught first
        why = "HF_HUB_OFFLINE is set and it is not in the cache" if _offline() else f"cannot reach {_endpoint()}"
        raise HubError(f"{where}: {why} (cache: {_cache_home()})") from None
    except errors.RepositoryNotFoundError:
        raise HubError(f"{where}: no such repository on {_endpoint()} (or it is private)") from None
    except errors.RevisionNotFoundError:
        raise HubError(f"{where}: no revision {revision!r} in {repo}") from None
    except errors.EntryNotFoundError:
        raise HubError(f"{where}: {repo} has no file {filename}") from None
    except (errors.HfHubHTTPError, OSError, ValueError) as e:
        raise HubError(f"{where}: {str(e).strip().splitlines()[0]}") from None


def _reachable(endpoint: str, timeout: float = 5.0) -> bool:
    """Whether the endpoint's host accepts a connection (a refused or unknown host answers at once)."""
    url = urllib.parse.urlsplit(endpoint)
    try:
        socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)), timeout).close()
        return True
    except OSError:
        return False


def _endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co")


def _cache_home() -> str:
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface")
    return os.path.join(os.path.expanduser(home), "hub")


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def read_config(repo: str, revision: str | None = None) -> dict:
    """A timm repo's config.json (architecture, num_classes, pretrained_cfg)."""
    path = download(repo, "config.json", revision)
    try:
        config = json.loads(path.read_text())
    except ValueError as e:
        raise HubError(f"hf://{repo}/config.json is not JSON ({e})") from None
    if not isinstance(config, dict) or not (isinstance(config.get("architecture"), str) or is_preset_config(config)):
        raise HubError(f"hf://{repo}/config.json names no architecture: not a timm model repo or a keras-models preset")
    return config


def is_preset_config(config: dict) -> bool:
    """A keras-models preset's config.json (pushed with --format preset), not a timm one."""
    return config.get("module") == "keras_models" and isinstance(config.get("config"), dict)


def snapshot(repo: str, files: tuple[str, ...], optional: tuple[str, ...] = (), revision: str | None = None) -> Path:
    """Download `files` (and those of `optional` the repo has) of one revision: their shared folder."""
    folder = download(repo, files[0], revision).parent
    for name in files[1:]:
        download(repo, name, revision)
    for name in optional:
        try:
            download(repo, name, revision)
        except HubError as e:
            if "has no file" not in str(e):
                raise
    return folder


def upload(repo: str, folder: Path, *, message: str, private: bool = False, revision: str | None = None) -> str:
    """Publish every file of `folder` to a Hub model repo (created if absent) in one commit: either
    all of them appear or none (a failed upload leaves the repo as it was). The token is
    huggingface_hub's own (`HF_TOKEN`, else `hf auth login`'s cache)."""
    try:
        from huggingface_hub import HfApi
    except ImportError:
        raise HubError("pushing needs huggingface_hub: pip install huggingface_hub") from None
    where = f"hf://{repo}"
    if not _reachable(_endpoint()):
        raise HubError(f"{where}: cannot reach {_endpoint()}")
    api = HfApi(endpoint=_endpoint())
    try:
        api.create_repo(repo, private=private, exist_ok=True)
        info = api.upload_folder(repo_id=repo, folder_path=str(folder), revision=revision, commit_message=message)
    except Exception as e:  # HfHubHTTPError, httpx's errors from an LFS transfer, OSError, ValueError
        response = getattr(e, "response", None)
        why = {401: "the Hub refused the token (set HF_TOKEN, or run `hf auth login`)",
               403: "this token may not write there (a write token of that user or organisation?)",
               404: "no such repository or revision"}.get(getattr(response, "status_code", None))
        raise HubError(f"{where}: {why or (str(e).strip() or type(e).__name__).splitlines()[0]}; "
                       "nothing was published") from None
    return info.commit_url


def weights_file(repo: str, revision: str | None = None) -> Path:
    """The repo's weights (model.safetensors, else pytorch_model.bin), config.json beside it."""
    download(repo, "config.json", revision)  # beside the weights: provenance reads it
    last = None
    for filename in WEIGHT_FILES:
        try:
            return download(repo, filename, revision)
        except HubError as e:
            if "has no file" not in str(e):
                raise
            last = e
    raise HubError(f"hf://{repo} has none of {', '.join(WEIGHT_FILES)}") from last


def hf_weights_file(hf_hub_id: str) -> Path:
    """A registry tag's Hub weights (`timm/rexnet_130.nav_in1k`)."""
    return weights_file(*parse(hf_hub_id))


def pretrained_from_config(config: dict) -> Pretrained:
    """A `Pretrained` for a repo's own pretrained_cfg (its size, crop, interpolation, mean/std)."""
    cfg = config.get("pretrained_cfg") if isinstance(config.get("pretrained_cfg"), dict) else {}
    size = cfg.get("test_input_size") or cfg.get("input_size")
    return Pretrained(
        tag=str(cfg.get("tag") or "hub"), source="timm",
        input_size=int(size[-1]) if size else None,
        crop_pct=cfg.get("test_crop_pct") or cfg.get("crop_pct"),
        interpolation=cfg.get("interpolation"), crop_mode=cfg.get("crop_mode") or "center",
        mean=tuple(cfg["mean"]) if cfg.get("mean") else None, std=tuple(cfg["std"]) if cfg.get("std") else None,
        num_classes=int(config.get("num_classes", cfg.get("num_classes", 1000))), license=cfg.get("license"),
    )
