"""Download published weights into the Keras cache, verified, atomically, with a progress bar."""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from pathlib import Path

from tqdm.auto import tqdm

from keras_models.files import atomic_output, file_digest

MIRROR_ENV = "KERAS_MODELS_WEIGHTS_MIRROR"  # base URL that replaces every weight URL's folder


class DownloadError(RuntimeError):
    """A download failed or its checksum did not match (message is one line)."""


def cache_dir() -> Path:
    """`$KERAS_HOME/models` (default `~/.keras/models`), shared with keras.applications."""
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models"


def resolve_url(url: str) -> str:
    mirror = os.environ.get(MIRROR_ENV)
    return mirror.rstrip("/") + "/" + url.rsplit("/", 1)[-1] if mirror else url


def file_matches(path: Path, md5: str | None = None, hash_prefix: str | None = None) -> bool:
    if md5:
        return file_digest(path, "md5") == md5
    if hash_prefix:
        return file_digest(path, "sha256").startswith(hash_prefix)
    return True


def fetch(url: str, *, md5: str | None = None, hash_prefix: str | None = None, timeout: float = 60.0) -> Path:
    """Return the cached file for `url`, downloading and verifying it first if needed.

    The file is written to a temporary name and renamed only once its checksum matches,
    so an interrupted or corrupted download never poisons the cache.
    """
    url = resolve_url(url)
    target = cache_dir() / url.rsplit("/", 1)[-1]
    if target.is_file() and file_matches(target, md5, hash_prefix):
        return target
    try:
        with atomic_output(target, suffix=".part") as tmp:
            with open(tmp, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
                total = int(response.headers.get("Content-Length") or 0) or None
                with tqdm(total=total, unit="B", unit_scale=True, desc=target.name, disable=None) as bar:
                    for chunk in iter(lambda: response.read(1 << 16), b""):
                        out.write(chunk)
                        bar.update(len(chunk))
            if not file_matches(Path(tmp), md5, hash_prefix):
                raise DownloadError(f"{url} downloaded but its checksum does not match (corrupted or changed file)")
        return target
    except urllib.error.HTTPError as e:
        raise DownloadError(f"could not download {url}: HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", None) or e
        raise DownloadError(f"could not download {url}: {reason}") from None
