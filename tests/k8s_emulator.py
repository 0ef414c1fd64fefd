"""A focused Kubernetes API emulator on loopback, for the official client to talk HTTP to.

Faithful where the hub depends on it: resourceVersion on every write, 409 Conflict on a stale
update, 409 AlreadyExists on create, PUT, merge patch (RFC 7386), JSON patch (RFC 6902), server-side
apply (as a merge), the ``/status`` subresource (writes there touch only ``status``, elsewhere never
``status``), label selectors (=, ==, !=, in, notin, exists), and watch (a stream of events after a
resourceVersion). Namespaced and cluster-scoped resources under ``/api/v1`` and ``/apis/G/V``.
"""

from __future__ import annotations

import copy
import json
import re
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

_PATH = re.compile(r"^/(?:api/(?P<core>v1)|apis/(?P<group>[^/]+)/(?P<version>[^/]+))"
                   r"(?:/namespaces/(?P<ns>[^/]+))?/(?P<plural>[^/]+)(?:/(?P<name>[^/]+))?(?:/(?P<sub>status))?$")


def merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


def _pointer(path: str) -> list[str]:
    return [p.replace("~1", "/").replace("~0", "~") for p in path.split("/")[1:]]


def json_patch(doc: Any, ops: list[dict[str, Any]]) -> Any:
    doc = copy.deepcopy(doc)
    for op in ops:
        parts = _pointer(op["path"])
        parent = doc
        for p in parts[:-1]:
            parent = parent[int(p)] if isinstance(parent, list) else parent[p]
        last = parts[-1]
        kind = op["op"]
        if kind == "test":
            cur = parent[int(last)] if isinstance(parent, list) else parent.get(last)
            if cur != op["value"]:
                raise ValueError(f"test failed at {op['path']}")
        elif kind in ("add", "replace"):
            if isinstance(parent, list):
                if last == "-":
                    parent.append(op["value"])
                elif kind == "add":
                    parent.insert(int(last), op["value"])
                else:
                    parent[int(last)] = op["value"]
            else:
                if kind == "replace" and last not in parent:
                    raise ValueError(f"replace of missing {op['path']}")
                parent[last] = op["value"]
        elif kind == "remove":
            if isinstance(parent, list):
                parent.pop(int(last))
            else:
                del parent[last]
        else:
            raise ValueError(f"unsupported op {kind}")
    return doc


def selector_matches(selector: str, labels: dict[str, str]) -> bool:
    for term in [t.strip() for t in re.split(r",(?![^()]*\))", selector) if t.strip()]:
        m = re.match(r"^(\S+)\s+(in|notin)\s+\((.*)\)$", term)
        if m:
            values = {v.strip() for v in m.group(3).split(",")}
            has = labels.get(m.group(1)) in values
            if (m.group(2) == "in") != has:
                return False
        elif "!=" in term:
            k, v = term.split("!=", 1)
            if labels.get(k.strip()) == v.strip():
                return False
        elif "=" in term:
            k, v = term.replace("==", "=").split("=", 1)
            if labels.get(k.strip()) != v.strip():
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


class Emulator:
    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str, str], dict[str, Any]] = {}
        self.events: list[tuple[int, str, tuple[str, str, str], dict[str, Any]]] = []
        self.rv = 0
        self.lock = threading.Condition()
        self.requests: list[tuple[str, str]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a: object) -> None:
                pass

            def _body(self) -> Any:
                n = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(n) if n else b""
                return json.loads(raw) if raw else None

            def _send(self, code: int, obj: Any) -> None:
                data = json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _status(self, code: int, reason: str, message: str) -> None:
                self._send(code, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                                  "reason": reason, "message": message, "code": code})

            def _route(self) -> tuple[dict[str, str], dict[str, list[str]]] | None:
                u = urlparse(self.path)
                m = _PATH.match(u.path)
                if not m:
                    self._status(404, "NotFound", f"no route {u.path}")
                    return None
                d = m.groupdict()
                d["gv"] = "v1" if d["core"] else f"{d['group']}/{d['version']}"
                outer.requests.append((self.command, u.path))
                return d, parse_qs(u.query)

            def do_GET(self) -> None:
                r = self._route()
                if r is None:
                    return
                d, q = r
                if d["name"]:
                    obj = outer.get(d["gv"], d["ns"] or "", d["plural"], d["name"])
                    if obj is None:
                        self._status(404, "NotFound", f'{d["plural"]} "{d["name"]}" not found')
                    else:
                        self._send(200, obj)
                    return
                selector = (q.get("labelSelector") or [""])[0]
                if (q.get("watch") or [""])[0] in ("true", "1"):
                    self._watch(d, selector, int((q.get("resourceVersion") or ["0"])[0] or 0),
                                float((q.get("timeoutSeconds") or ["5"])[0]))
                    return
                with outer.lock:
                    items = [copy.deepcopy(o) for (gv, ns, pl, _), o in sorted(outer.objects.items())
                             if gv == d["gv"] and pl == d["plural"] and (not d["ns"] or ns == d["ns"])
                             and selector_matches(selector, o["metadata"].get("labels") or {})]
                    rv = outer.rv
                self._send(200, {"kind": "List", "apiVersion": d["gv"], "metadata": {"resourceVersion": str(rv)},
                                 "items": items})

            def _watch(self, d: dict[str, str], selector: str, since: int, timeout: float) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                deadline = time.monotonic() + timeout
                seen = since
                try:
                    while time.monotonic() < deadline:
                        with outer.lock:
                            fresh = [e for e in outer.events if e[0] > seen]
                            if not fresh:
                                outer.lock.wait(timeout=max(0.0, min(0.2, deadline - time.monotonic())))
                                continue
                        for rv, kind, (gv, ns, pl), obj in fresh:
                            seen = rv
                            if gv != d["gv"] or pl != d["plural"] or (d["ns"] and ns != d["ns"]):
                                continue
                            if not selector_matches(selector, obj["metadata"].get("labels") or {}):
                                continue
                            line = json.dumps({"type": kind, "object": obj}).encode() + b"\n"
                            self.wfile.write(f"{len(line):x}\r\n".encode() + line + b"\r\n")
                            self.wfile.flush()
                    self.wfile.write(b"0\r\n\r\n")
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def do_POST(self) -> None:
                r = self._route()
                if r is None:
                    return
                d, _ = r
                obj = self._body()
                code, out = outer.create(d["gv"], d["ns"] or "", d["plural"], obj)
                self._send(code, out) if code < 300 else self._status(code, out["reason"], out["message"])

            def do_PUT(self) -> None:
                r = self._route()
                if r is None:
                    return
                d, _ = r
                code, out = outer.replace(d["gv"], d["ns"] or "", d["plural"], d["name"], self._body(), bool(d["sub"]))
                self._send(code, out) if code < 300 else self._status(code, out["reason"], out["message"])

            def do_PATCH(self) -> None:
                r = self._route()
                if r is None:
                    return
                d, _ = r
                ctype = self.headers.get("Content-Type", "").split(";")[0]
                code, out = outer.patch(d["gv"], d["ns"] or "", d["plural"], d["name"], ctype, self._body(),
                                        bool(d["sub"]))
                self._send(code, out) if code < 300 else self._status(code, out["reason"], out["message"])

            def do_DELETE(self) -> None:
                r = self._route()
                if r is None:
                    return
                d, _ = r
                code, out = outer.delete(d["gv"], d["ns"] or "", d["plural"], d["name"])
                self._send(code, out) if code < 300 else self._status(code, out["reason"], out["message"])

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    # -- storage -------------------------------------------------------------------------------

    def _bump(self, kind: str, key: tuple[str, str, str, str], obj: dict[str, Any]) -> dict[str, Any]:
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)
        self.events.append((self.rv, kind, key[:3], copy.deepcopy(obj)))
        self.lock.notify_all()
        return copy.deepcopy(obj)

    def get(self, gv: str, ns: str, plural: str, name: str) -> dict[str, Any] | None:
        with self.lock:
            obj = self.objects.get((gv, ns, plural, name))
            return copy.deepcopy(obj) if obj else None

    def create(self, gv: str, ns: str, plural: str, obj: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        meta_in = obj.setdefault("metadata", {})
        if not meta_in.get("name") and meta_in.get("generateName"):
            meta_in["name"] = meta_in["generateName"] + uuid.uuid4().hex[:5]
        name = meta_in.get("name")
        if not name:
            return 422, {"reason": "Invalid", "message": "metadata.name is required"}
        key = (gv, ns, plural, name)
        with self.lock:
            if key in self.objects:
                return 409, {"reason": "AlreadyExists", "message": f'{plural} "{name}" already exists'}
            obj = copy.deepcopy(obj)
            meta = obj.setdefault("metadata", {})
            meta.update({"uid": str(uuid.uuid4()), "generation": 1, "namespace": ns or None,
                         "creationTimestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
            if not ns:
                meta.pop("namespace")
            self.objects[key] = obj
            return 201, self._bump("ADDED", key, obj)

    def replace(self, gv: str, ns: str, plural: str, name: str, obj: dict[str, Any],
                status_only: bool) -> tuple[int, dict[str, Any]]:
        key = (gv, ns, plural, name)
        with self.lock:
            cur = self.objects.get(key)
            if cur is None:
                return 404, {"reason": "NotFound", "message": f'{plural} "{name}" not found'}
            want = (obj.get("metadata") or {}).get("resourceVersion")
            if want and want != cur["metadata"]["resourceVersion"]:
                return 409, {"reason": "Conflict", "message": (
                    f'Operation cannot be fulfilled on {plural} "{name}": the object has been modified; '
                    "please apply your changes to the latest version and try again")}
            return 200, self._store(key, cur, obj, status_only)

    def _store(self, key: tuple[str, str, str, str], cur: dict[str, Any], new: dict[str, Any],
               status_only: bool) -> dict[str, Any]:
        new = copy.deepcopy(new)
        if status_only:
            merged = copy.deepcopy(cur)
            merged["status"] = new.get("status")
        else:
            merged = new
            if "status" in cur:
                merged["status"] = cur["status"]  # the main resource never writes status
            else:
                merged.pop("status", None)
            meta = merged.setdefault("metadata", {})
            for k in ("uid", "creationTimestamp", "namespace"):
                if k in cur["metadata"]:
                    meta[k] = cur["metadata"][k]
            if merged.get("spec") != cur.get("spec"):
                meta["generation"] = cur["metadata"].get("generation", 1) + 1
            else:
                meta["generation"] = cur["metadata"].get("generation", 1)
        self.objects[key] = merged
        return self._bump("MODIFIED", key, merged)

    def patch(self, gv: str, ns: str, plural: str, name: str, ctype: str, body: Any,
              status_only: bool) -> tuple[int, dict[str, Any]]:
        key = (gv, ns, plural, name)
        with self.lock:
            cur = self.objects.get(key)
            if cur is None:
                if ctype == "application/apply-patch+yaml":
                    self.lock.release()
                    try:
                        return self.create(gv, ns, plural, body)
                    finally:
                        self.lock.acquire()
                return 404, {"reason": "NotFound", "message": f'{plural} "{name}" not found'}
            try:
                if ctype == "application/json-patch+json":
                    new = json_patch(cur, body)
                elif ctype in ("application/merge-patch+json", "application/strategic-merge-patch+json",
                               "application/apply-patch+yaml"):
                    want = ((body or {}).get("metadata") or {}).get("resourceVersion")
                    if want and want != cur["metadata"]["resourceVersion"]:
                        return 409, {"reason": "Conflict", "message": "the object has been modified"}
                    new = merge_patch(cur, body)
                else:
                    return 415, {"reason": "UnsupportedMediaType", "message": f"unsupported patch type {ctype}"}
            except (KeyError, IndexError, ValueError) as exc:
                return 422, {"reason": "Invalid", "message": str(exc)}
            return 200, self._store(key, cur, new, status_only)

    def delete(self, gv: str, ns: str, plural: str, name: str) -> tuple[int, dict[str, Any]]:
        key = (gv, ns, plural, name)
        with self.lock:
            cur = self.objects.pop(key, None)
            if cur is None:
                return 404, {"reason": "NotFound", "message": f'{plural} "{name}" not found'}
            self._bump("DELETED", key, cur)
            return 200, {"kind": "Status", "apiVersion": "v1", "status": "Success"}

    # -- lifecycle -------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def kubeconfig(self, path: str, context: str = "emulated") -> str:
        import yaml

        doc = {"apiVersion": "v1", "kind": "Config", "current-context": context,
               "clusters": [{"name": context, "cluster": {"server": self.url}}],
               "users": [{"name": context, "user": {"token": "emulator-token"}}],
               "contexts": [{"name": context, "context": {"cluster": context, "user": context}}]}
        with open(path, "w") as f:
            yaml.safe_dump(doc, f)
        return path

    def __enter__(self) -> Emulator:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
