"""A Hugging Face Hub stand-in on 127.0.0.1: `/<org>/<repo>/resolve/<rev>/<file>` as the Hub answers it,
and the upload endpoints huggingface_hub's `create_repo` and `upload_folder` use (its LFS path).

Small files answer 200 with their git blob sha1 as ETag; LFS files (`*.safetensors`) answer 302 to
`/cdn/<sha256>` with `X-Linked-Etag`/`X-Linked-Size`, as the Hub redirects to its CDN. Every answer
carries `X-Repo-Commit`. Unknown repos and files are 404 with the Hub's `X-Error-Code`. `corrupt`
names files whose CDN bytes are damaged (same length, other content).

Uploads: `tokens` maps a bearer token to the namespaces it may write (401 for another token, 403
for another namespace). Files reach a repo only in a commit, all of them or none: LFS objects are
PUT first and stay unannounced until a commit names them.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import threading
from pathlib import Path

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class HubServer:
    def __init__(self, repos: dict[str, dict[str, bytes]]):
        self.repos = repos  # "org/name" -> {filename: content}
        self.corrupt: set[str] = set()
        self.requests: list[str] = []
        self.tokens: dict[str, set[str]] = {}  # token -> namespaces it may write
        self.lfs: dict[str, bytes] = {}  # sha256 -> uploaded bytes, not yet in any repo
        self.commits: list[tuple[str, str]] = []  # (repo, summary)
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

    def do_PUT(self) -> None:
        self.hub.requests.append(f"PUT {self.path}")
        data = self._body()
        oid = self.path.strip("/").split("/")[-1]
        if hashlib.sha256(data).hexdigest() != oid:
            return self._json(400, {"error": "content does not match its oid"})
        self.hub.lfs[oid] = data
        return self._json(200, {})

    def do_POST(self) -> None:
        self.hub.requests.append(f"POST {self.path}")
        body, parts = self._body(), self.path.split("?")[0].strip("/").split("/")
        if parts[:2] == ["api", "validate-yaml"]:  # the model card's metadata block, as the Hub checks it
            return self._validate_card(json.loads(body)["content"])
        if parts[:3] == ["api", "repos", "create"]:
            request = json.loads(body)
            repo = f"{request.get('organization') or 'me'}/{request['name']}"
            if not self._may_write(repo):
                return None
            if repo in self.hub.repos:
                return self._json(409, {"error": "You already created this model repo"}, "RepoExists")
            self.hub.repos[repo] = {}
            return self._json(200, {"url": f"{self.hub.url}/{repo}", "name": repo})
        if len(parts) == 6 and parts[:2] == ["api", "models"] and parts[4] in ("preupload", "commit"):
            repo = "/".join(parts[2:4])
            if repo not in self.hub.repos:
                return self._error("RepoNotFound")
            if not self._may_write(repo):
                return None
            return self._preupload(body) if parts[4] == "preupload" else self._commit(repo, body)
        if len(parts) == 6 and parts[1].endswith(".git") and parts[2:] == ["info", "lfs", "objects", "batch"]:
            if not self._may_write(f"{parts[0]}/{parts[1][:-4]}"):
                return None
            objects = [{**o, "authenticated": True,
                        "actions": {"upload": {"href": f"{self.hub.url}/lfs-upload/{o['oid']}"}}}
                       for o in json.loads(body)["objects"]]
            return self._json(200, {"transfer": "basic", "objects": objects})
        return self._error("RepoNotFound")

    def _validate_card(self, content: str) -> None:
        import yaml

        head = content.split("---")[1] if content.startswith("---") else ""
        try:
            meta = yaml.safe_load(head)
        except yaml.YAMLError as e:
            meta = str(e)
        if not isinstance(meta, dict):
            return self._json(400, {"errors": [{"message": f"the metadata block is not a mapping: {meta!r}"}]})
        return self._json(200, {"warnings": []})

    def _preupload(self, body: bytes) -> None:
        files = [{"path": f["path"], "uploadMode": "lfs" if f["path"].endswith((".safetensors", ".h5")) else "regular",
                  "shouldIgnore": False} for f in json.loads(body)["files"]]
        return self._json(200, {"files": files})

    def _commit(self, repo: str, body: bytes) -> None:
        import base64

        added, summary = {}, ""
        for line in body.decode().splitlines():
            item = json.loads(line)
            value = item["value"]
            if item["key"] == "header":
                summary = value.get("summary", "")
            elif item["key"] == "file":
                added[value["path"]] = base64.b64decode(value["content"])
            elif item["key"] == "lfsFile":
                if value["oid"] not in self.hub.lfs:
                    return self._json(422, {"error": f"LFS object {value['oid']} was never uploaded"})
                added[value["path"]] = self.hub.lfs[value["oid"]]
        self.hub.repos[repo].update(added)  # every file of the commit at once, or (above) none
        self.hub.commits.append((repo, summary))
        return self._json(200, {"commitUrl": f"{self.hub.url}/{repo}/commit/{COMMIT}", "commitOid": COMMIT})

    def _may_write(self, repo: str) -> bool:
        token = self.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if token not in self.hub.tokens:
            self._json(401, {"error": "Invalid credentials in Authorization header"}, "Unauthorized")
            return False
        if repo.split("/")[0] not in self.hub.tokens[token]:
            self._json(403, {"error": f"You don't have the rights to write to {repo}"}, "Forbidden")
            return False
        return True

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() != "chunked":
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))
        data = b""
        while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
            data += self.rfile.read(size)
            self.rfile.readline()  # the CRLF after each chunk
        self.rfile.readline()  # the CRLF after the last (empty) chunk
        return data

    def _json(self, code: int, data: dict, error_code: str | None = None) -> None:
        payload = json.dumps(data).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        if error_code:
            self.send_header("X-Error-Code", error_code)
        if "error" in data:
            self.send_header("X-Error-Message", data["error"])
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

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
        if self.command != "HEAD":
            self.wfile.write(message)
