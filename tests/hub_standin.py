"""A local stand-in for the few Hub API endpoints huggingface_hub (2.x) calls to push a folder and download it.

Upload (``create_repo`` + ``upload_folder`` with hf_xet disabled, so the plain commit path is taken):
  POST /api/repos/create, POST /api/validate-yaml, POST /api/models/{repo}/branch/{rev},
  POST /api/models/{repo}/preupload/{rev} (answers "regular" for every file, so no LFS transfer),
  POST /api/models/{repo}/commit/{rev} (ndjson: header + base64 files).
Download (``snapshot_download``):
  GET /api/models/{repo}/revision/{rev}, GET /api/models/{repo}/tree/{sha}, HEAD/GET /{repo}/resolve/{rev}/{path}.

Every request is recorded (method, path, whether an Authorization header came) so tests can check what was sent.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit


class Store:
    def __init__(self):
        # repo_id -> {"private": bool, "branches": {name: sha}, "commits": {sha: {path: bytes}}}
        self.repos: dict[str, dict] = {}
        self.requests: list[tuple[str, str, str | None]] = []
        self.lock = threading.Lock()

    def files(self, repo_id: str, rev: str) -> tuple[str, dict[str, bytes]]:
        repo = self.repos[repo_id]
        sha = repo["branches"].get(rev, rev)
        return sha, repo["commits"][sha]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    store: Store
    endpoint: str

    def log_message(self, *args):  # keep test output quiet
        pass

    def _send(self, status: int, body: bytes = b"", headers: dict | None = None, ctype="application/json"):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, obj, status=200):
        self._send(status, json.dumps(obj).encode())

    def _record(self) -> str:
        path = urlsplit(self.path).path
        with self.store.lock:
            self.store.requests.append((self.command, path, self.headers.get("Authorization")))
        return unquote(path)

    def do_POST(self):
        path = self._record()
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        if path == "/api/repos/create":
            return self._create(json.loads(body))
        if path == "/api/validate-yaml":
            return self._json({"errors": [], "warnings": []})
        m = re.fullmatch(r"/api/models/([^/]+/[^/]+)/(preupload|commit|branch)/(.+)", path)
        if not m or m.group(1) not in self.store.repos:
            return self._json({"error": f"not found: {path}"}, 404)
        repo_id, action, rev = m.groups()
        repo = self.store.repos[repo_id]
        if action == "branch":
            repo["branches"].setdefault(rev, repo["branches"]["main"])
            return self._json({})
        if action == "preupload":
            return self._json({"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False,
                                          "oid": None} for f in json.loads(body)["files"]]})
        return self._commit(repo_id, rev, body)

    def _create(self, p: dict):
        repo_id = f"{p['organization']}/{p['name']}" if p.get("organization") else p["name"]
        if repo_id in self.store.repos:
            # the Hub answers a conflict with the existing repo's url, which create_repo(exist_ok=True) reads
            return self._json({"error": "You already created this model repo", "url": f"{self.endpoint}/{repo_id}"},
                              409)
        empty = hashlib.sha1(repo_id.encode()).hexdigest()
        self.store.repos[repo_id] = {"private": p.get("visibility") == "private", "branches": {"main": empty},
                                     "commits": {empty: {}}}
        return self._json({"url": f"{self.endpoint}/{repo_id}", "name": repo_id})

    def _commit(self, repo_id: str, rev: str, body: bytes):
        sha, current = self.store.files(repo_id, rev)
        new = dict(current)
        for item in (json.loads(line) for line in body.decode().splitlines() if line.strip()):
            if item["key"] == "file":
                new[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
            elif item["key"] != "header":
                return self._json({"error": f"stand-in does not support {item['key']}"}, 400)
        oid = hashlib.sha1(json.dumps(sorted((k, _git_oid(v)) for k, v in new.items())).encode() + sha.encode())
        repo = self.store.repos[repo_id]
        repo["commits"][oid.hexdigest()] = new
        repo["branches"][rev] = oid.hexdigest()
        return self._json({"commitUrl": f"{self.endpoint}/{repo_id}/commit/{oid.hexdigest()}",
                           "commitOid": oid.hexdigest()})

    def do_GET(self):
        path = self._record()
        m = re.fullmatch(r"/api/models/([^/]+/[^/]+)/(revision|tree)/([^/]+)", path)
        if m and m.group(1) in self.store.repos:
            repo_id, what, rev = m.groups()
            sha, files = self.store.files(repo_id, rev)
            if what == "tree":
                return self._json([{"type": "file", "path": f, "size": len(b), "oid": _git_oid(b)}
                                   for f, b in sorted(files.items())])
            return self._json({"id": repo_id, "sha": sha, "private": self.store.repos[repo_id]["private"],
                               "siblings": [{"rfilename": f} for f in sorted(files)]})
        m = re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
        if m and m.group(1) in self.store.repos:
            sha, files = self.store.files(m.group(1), m.group(2))
            if m.group(3) in files:
                body = files[m.group(3)]
                return self._send(200, body, {"X-Repo-Commit": sha, "ETag": f'"{_git_oid(body)}"'},
                                  ctype="application/octet-stream")
            return self._send(404, b"", {"X-Error-Code": "EntryNotFound"})
        return self._json({"error": f"not found: {path}"}, 404)

    do_HEAD = do_GET


def _git_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def start() -> tuple[ThreadingHTTPServer, Store, str]:
    """Serve on a free local port in a daemon thread; returns (server, store, endpoint URL)."""
    store = Store()
    handler = type("BoundHandler", (Handler,), {"store": store, "endpoint": ""})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    handler.endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, store, handler.endpoint
