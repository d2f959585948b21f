"""A Hugging Face Hub stand-in on 127.0.0.1: `/<org>/<repo>/resolve/<rev>/<file>` as the Hub answers it.

Small files answer 200 with their git blob sha1 as ETag; LFS files (`*.safetensors`) answer 302 to
`/cdn/<sha256>` with `X-Linked-Etag`/`X-Linked-Size`, as the Hub redirects to its CDN. Every answer
carries `X-Repo-Commit`. Unknown repos and files are 404 with the Hub's `X-Error-Code`. `corrupt`
names files whose CDN bytes are damaged (same length, other content).
"""

from __future__ import annotations

import hashlib
import http.server
import threading
from pathlib import Path

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class HubServer:
    def __init__(self, repos: dict[str, dict[str, bytes]]):
        self.repos = repos  # "org/name" -> {filename: content}
        self.corrupt: set[str] = set()
        self.requests: list[str] = []
        handler = type("Handler", (_Handler,), {"hub": self})
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def blob(self, sha256: str) -> bytes | None:
        for repo in self.repos.values():
            for name, data in repo.items():
                if hashlib.sha256(data).hexdigest() == sha256:
                    return data[:-8] + b"\x00" * 8 if name in self.corrupt else data
        return None


def git_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def timm_repo(weights: Path, architecture: str, tag: str, **pretrained_cfg) -> dict[str, bytes]:
    """A timm Hub repo: config.json (architecture, pretrained_cfg) and model.safetensors."""
    import json

    cfg = {"tag": tag, "input_size": [3, 224, 224], "crop_pct": 0.875, "interpolation": "bicubic",
           "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "num_classes": 1000, **pretrained_cfg}
    config = {"architecture": architecture, "num_classes": cfg["num_classes"], "pretrained_cfg": cfg}
    return {"config.json": json.dumps(config).encode(), "model.safetensors": weights.read_bytes()}


class _Handler(http.server.BaseHTTPRequestHandler):
    hub: HubServer

    def log_message(self, *args) -> None:
        pass

    def do_HEAD(self) -> None:
        self._answer(body=False)

    def do_GET(self) -> None:
        self._answer(body=True)

    def _answer(self, body: bool) -> None:
        self.hub.requests.append(f"{self.command} {self.path}")
        parts = self.path.split("?")[0].strip("/").split("/")
        if parts[0] == "cdn" and len(parts) == 2:
            data = self.hub.blob(parts[1])
            return self._send(200, data, body, etag=parts[1]) if data is not None else self._error("EntryNotFound")
        if len(parts) < 5 or parts[2] != "resolve":
            return self._error("RepoNotFound")
        repo, revision, filename = "/".join(parts[:2]), parts[3], "/".join(parts[4:])
        if repo not in self.hub.repos:
            return self._error("RepoNotFound")
        if revision not in ("main", COMMIT):
            return self._error("RevisionNotFound")
        data = self.hub.repos[repo].get(filename)
        if data is None:
            return self._error("EntryNotFound")
        if filename.endswith(".safetensors"):
            sha = hashlib.sha256(data).hexdigest()
            self.send_response(302)
            self.send_header("Location", f"{self.hub.url}/cdn/{sha}")
            self.send_header("X-Repo-Commit", COMMIT)
            self.send_header("X-Linked-Etag", f'"{sha}"')
            self.send_header("X-Linked-Size", str(len(data)))
            self.send_header("ETag", f'"{git_sha1(data)}"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        return self._send(200, data, body, etag=git_sha1(data))

    def _send(self, code: int, data: bytes, body: bool, etag: str) -> None:
        self.send_response(code)
        self.send_header("X-Repo-Commit", COMMIT)
        self.send_header("ETag", f'"{etag}"')
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if body:
            self.wfile.write(data)

    def _error(self, code: str) -> None:
        message = f"{code}: {self.path}".encode()
        self.send_response(404)
        self.send_header("X-Error-Code", code)
        self.send_header("X-Error-Message", code)
        self.send_header("Content-Length", str(len(message)))
        self.end_headers()
        if self.command == "GET":
            self.wfile.write(message)
