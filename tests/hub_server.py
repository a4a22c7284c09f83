"""A tiny in-memory stand-in for the Hugging Face Hub, for offline `push_to_hub` tests.

It speaks just enough of the Hub HTTP API (model repos, branch `main`) for `model.push_to_hub`,
`tokenizer.push_to_hub`, `Trainer.push_to_hub`, `hf_hub_download`, `snapshot_download` and
`from_pretrained(repo_id)` for a repository pushed to it. Every file is committed as a regular git blob:
no LFS, no Xet.

`huggingface_hub` reads `HF_ENDPOINT` and `HF_TOKEN` when it is imported, so the client must be a process started
with `LocalHub.env()` in its environment:

>>> with LocalHub() as hub:
...     subprocess.run([sys.executable, "push.py"], env={**os.environ, **hub.env()}, check=True)
...     sorted(hub.files("user/tiny-textgru"))
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit


def git_blob_sha(content: bytes) -> str:
    """The git object id of a blob: what the Hub reports as a regular file's `oid` and ETag."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


class LocalHub:
    """An in-memory Hub on `127.0.0.1` (a free port), served from a background thread while the context is open.

    Args:
        user: the account `whoami` reports; repos created without a namespace land under it.

    Attributes:
        url: the endpoint to put in `HF_ENDPOINT` (set once the context is entered).
        repos: `{repo_id: {"sha": head commit, "commits": [commit, ...], "snapshots": {commit: {path: bytes}}}}`.
        requests: `(method, path)` of every request served, for debugging and for asserting downloads.
    """

    def __init__(self, user: str = "user"):
        self.user = user
        self.repos: dict[str, dict] = {}
        self.requests: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    def __enter__(self) -> LocalHub:
        handler = type("Handler", (_HubHandler,), {"hub": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="local-hub", daemon=True).start()
        host, port = self._server.server_address[:2]
        self.url = f"http://{host}:{port}"
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def env(self) -> dict[str, str]:
        """Environment variables that point a new process's `huggingface_hub` at this server."""
        return {
            "HF_ENDPOINT": self.url,
            "HF_TOKEN": "dummy",
            "HF_HUB_OFFLINE": "0",
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HUB_DISABLE_XET": "1",
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
        }

    def files(self, repo_id: str, revision: str = "main") -> dict[str, bytes]:
        """`{path: content}` of `repo_id` at `revision` (`main` or a commit id); `KeyError` if either is unknown."""
        repo = self.repos[repo_id]
        return dict(repo["snapshots"][repo["sha"] if revision == "main" else revision])

    def _create(self, repo_id: str) -> bool:
        with self._lock:
            if repo_id in self.repos:
                return False
            self.repos[repo_id] = {"sha": None, "commits": [], "snapshots": {}}
            self._record(repo_id, {".gitattributes": b""}, "initial commit")
            return True

    def _commit(self, repo_id: str, operations: list[dict]) -> str:
        """Apply the NDJSON operations of a `/commit` call; `KeyError` names a file to delete that is not there."""
        with self._lock:
            files = self.files(repo_id)
            for op in operations:
                key, value = op.get("key"), op.get("value", {})
                if key == "file":
                    files[value["path"]] = base64.b64decode(value["content"])
                elif key == "deletedFile":
                    del files[value["path"]]
                elif key == "deletedFolder":
                    folder = value["path"].rstrip("/") + "/"
                    files = {path: data for path, data in files.items() if not path.startswith(folder)}
                elif key == "lfsFile":
                    raise ValueError("LocalHub stores regular files only (its preupload never answers 'lfs')")
            return self._record(repo_id, files, json.dumps(operations))

    def _record(self, repo_id: str, files: dict[str, bytes], salt: str) -> str:
        repo = self.repos[repo_id]
        sha = hashlib.sha1(f"{repo_id}\0{len(repo['commits'])}\0{salt}".encode()).hexdigest()
        repo["sha"], repo["snapshots"][sha] = sha, files
        repo["commits"].append(sha)
        return sha


class _HubHandler(BaseHTTPRequestHandler):
    hub: LocalHub
    protocol_version = "HTTP/1.1"  # keep-alive, as the client expects; every answer carries Content-Length

    def log_message(self, format, *args) -> None:  # keep test output clean
        pass

    def do_GET(self) -> None:
        self._route(self._get)

    def do_HEAD(self) -> None:
        self._route(self._get, head=True)

    def do_POST(self) -> None:
        self._route(self._post)

    def _route(self, endpoint, head: bool = False) -> None:
        url = urlsplit(self.path)
        self.hub.requests.append((self.command, url.path))
        parts = [unquote(p) for p in url.path.strip("/").split("/")]  # tree paths arrive with quoted slashes
        try:
            endpoint(parts, parse_qs(url.query), head)
        except Exception as err:  # answer instead of dropping the connection, so the client shows the cause
            self._error(500, "ServerError", f"LocalHub failed on {self.command} {self.path}: {err!r}", head)

    def _send(self, status: int, body: bytes, headers: dict, head: bool = False) -> None:
        self.send_response(status)
        for name, value in {"Content-Type": "application/json", **headers, "Content-Length": len(body)}.items():
            self.send_header(name, str(value))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _json(self, payload, status: int = 200, headers: dict | None = None) -> None:
        self._send(status, json.dumps(payload).encode(), headers or {})

    def _error(self, status: int, code: str, message: str, head: bool = False, headers: dict | None = None) -> None:
        # huggingface_hub turns X-Error-Code into RepositoryNotFoundError, EntryNotFoundError, ...
        headers = {"X-Error-Code": code, "X-Error-Message": message, **(headers or {})}
        self._send(status, json.dumps({"error": message}).encode(), headers, head)

    def _snapshot(self, repo_id: str, revision: str, head: bool = False) -> tuple[str, dict[str, bytes]] | None:
        """`(commit, files)` of `repo_id` at `revision`, or None after answering 404."""
        repo = self.hub.repos.get(repo_id)
        if repo is None:
            return self._error(404, "RepoNotFound", f"Repository {repo_id} not found", head)
        sha = repo["sha"] if revision == "main" else revision
        if sha not in repo["snapshots"]:
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}", head)
        return sha, repo["snapshots"][sha]

    def _post(self, parts: list[str], query: dict, head: bool) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if parts == ["api", "repos", "create"]:
            payload = json.loads(body)
            repo_id = f"{payload.get('organization') or self.hub.user}/{payload['name']}"
            answer = {"url": f"{self.hub.url}/{repo_id}", "name": repo_id}
            if self.hub._create(repo_id):
                return self._json(answer)
            return self._json({**answer, "error": "You already created this model repo"}, 409)  # exist_ok reads url
        if parts == ["api", "validate-yaml"]:
            return self._json({"errors": [], "warnings": []})
        if len(parts) == 6 and parts[:2] == ["api", "models"] and parts[4] in ("preupload", "commit"):
            repo_id, action, revision = f"{parts[2]}/{parts[3]}", parts[4], parts[5]
            if revision != "main":
                return self._error(400, "BadRequest", "LocalHub has no branches: push to `main`")
            found = self._snapshot(repo_id, revision)
            if found is None:
                return
            sha, files = found
            if action == "preupload":  # "regular" for all: contents come inline with the commit; oid skips no-ops
                answer = [
                    {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False, "oid": _oid(files, f["path"])}
                    for f in json.loads(body)["files"]
                ]
                return self._json({"files": answer, "commitOid": sha})
            operations = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
            try:
                sha = self.hub._commit(repo_id, operations)
            except KeyError as missing:
                return self._error(404, "EntryNotFound", f"A file with this name doesn't exist: {missing}")
            return self._json({"commitUrl": f"{self.hub.url}/{repo_id}/commit/{sha}", "commitOid": sha})
        self._error(404, "NotFound", f"LocalHub has no POST {self.path}")

    def _get(self, parts: list[str], query: dict, head: bool) -> None:
        if parts == ["api", "whoami-v2"]:
            return self._json({"type": "user", "name": self.hub.user, "orgs": [], "auth": {}})
        if len(parts) >= 4 and parts[:2] == ["api", "models"]:  # /api/models/{id}[/revision|tree/{rev}[/path]]
            repo_id, rest = f"{parts[2]}/{parts[3]}", parts[4:]
            found = self._snapshot(repo_id, rest[1] if len(rest) > 1 else "main")
            if found is None:
                return
            sha, files = found
            if not rest or rest[0] == "revision":
                siblings = [
                    {"rfilename": p, "size": len(data), "blobId": git_blob_sha(data)} for p, data in files.items()
                ]
                return self._json(
                    {"id": repo_id, "modelId": repo_id, "sha": sha, "siblings": _sorted_by_path(siblings)}
                )
            if rest[0] == "tree":
                prefix = "/".join(rest[2:]).strip("/")
                entries = _tree(files, prefix, query.get("recursive", ["false"])[0].lower() == "true")
                if entries is None:
                    return self._error(404, "EntryNotFound", f"{prefix} does not exist on {rest[1]}")
                return self._json(entries)
        elif len(parts) >= 5 and parts[2] == "resolve":  # /{namespace}/{name}/resolve/{rev}/{path}
            found = self._snapshot(f"{parts[0]}/{parts[1]}", parts[3], head)
            if found is None:
                return
            (sha, files), path = found, "/".join(parts[4:])
            if path not in files:
                return self._error(404, "EntryNotFound", f"{path} does not exist", head, {"X-Repo-Commit": sha})
            headers = {"X-Repo-Commit": sha, "ETag": f'"{git_blob_sha(files[path])}"'}
            return self._send(200, files[path], {**headers, "Content-Type": "application/octet-stream"}, head)
        self._error(404, "NotFound", f"LocalHub has no {self.command} {self.path}", head)


def _sorted_by_path(entries: list[dict]) -> list[dict]:
    return sorted(entries, key=lambda entry: entry.get("rfilename") or entry.get("path"))


def _oid(files: dict[str, bytes], path: str) -> str | None:
    return git_blob_sha(files[path]) if path in files else None


def _tree(files: dict[str, bytes], prefix: str, recursive: bool) -> list[dict] | None:
    """Files and implied folders under `prefix`, in the Hub's `tree` format; None where no folder is there."""
    base = f"{prefix}/" if prefix else ""
    entries: dict[str, dict] = {}
    for path, data in files.items():
        if not path.startswith(base):
            continue
        steps = path[len(base) :].split("/")
        for depth in range(1, (len(steps) if recursive else 2)):  # folders on the way down
            if depth < len(steps):
                folder = base + "/".join(steps[:depth])
                entries[folder] = {"type": "directory", "path": folder, "oid": git_blob_sha(folder.encode())}
        if recursive or len(steps) == 1:
            entries[path] = {"type": "file", "path": path, "size": len(data), "oid": git_blob_sha(data)}
    if prefix and not entries:
        return None
    return _sorted_by_path(list(entries.values()))
