"""A local Kubernetes API server: etcd and kube-apiserver (built from the published Go modules by
``scripts/build-kube``) on loopback ports, with certificates made at start, a ServiceAccount
signing key, RBAC authorisation and the default admission plugins; the Flux and Kuma CRDs in
``crds/`` applied. Nothing but a real API server: no controllers run, so whoever plays a
controller (a test, a stand-in) writes the status subresource itself.

``start`` returns a ``LocalKube``: an admin kubeconfig (client certificate in ``system:masters``),
``apply`` (server-side apply of manifests), ``token_kubeconfig`` (a kubeconfig holding a
ServiceAccount's token from the TokenRequest API, so a caller runs with exactly that account's
RBAC) and ``stop`` (both processes by their process group, etcd's data removed with the directory
the caller owns). Talks HTTP through httpx; the ``kubernetes`` client stays in
``federation.runtimes``. Callers: the integration tests' session fixture; the demo may use it.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import socket
import ssl
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from federation.demo.procs import Proc, Supervisor, wait_for

CRD_DIR = Path(__file__).with_name("crds")
APPLY = "application/apply-patch+yaml"


class KubeStartError(RuntimeError):
    """etcd or kube-apiserver did not come up; the message carries the tail of its log."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _pem_key(key: Any) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,  # type: ignore[no-any-return]
                             serialization.NoEncryption())


def _cert(subject: x509.Name, issuer: x509.Name, public: Any, signer: Any, *, ca: bool,
          server: bool = False, client: bool = False) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    b = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public)
         .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
         .not_valid_after(now + dt.timedelta(days=7))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ca:
        b = b.add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                          content_commitment=False, key_encipherment=False, data_encipherment=False,
                                          key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
    else:
        usages = ([ExtendedKeyUsageOID.SERVER_AUTH] if server else []) + \
                 ([ExtendedKeyUsageOID.CLIENT_AUTH] if client else [])
        b = b.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    if server:
        b = b.add_extension(x509.SubjectAlternativeName([
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost"),
            x509.DNSName("kubernetes.default.svc")]), critical=False)
    return b.sign(signer, hashes.SHA256())


def _name(cn: str, org: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if org:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(attrs)


def make_pki(d: Path) -> dict[str, Path]:
    """CA, the API server's serving pair, an admin client pair (group system:masters) and the
    ServiceAccount signing key; private keys mode 0600."""
    d.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("federation-local-kube-ca")
    ca = _cert(ca_name, ca_name, ca_key.public_key(), ca_key, ca=True)
    out: dict[str, Path] = {"ca": d / "ca.crt"}
    out["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    for name, subject, kw in (("server", _name("kube-apiserver"), {"server": True}),
                              ("admin", _name("federation-admin", "system:masters"), {"client": True})):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _cert(subject, ca_name, key.public_key(), ca_key, ca=False, **kw)
        out[f"{name}.crt"], out[f"{name}.key"] = d / f"{name}.crt", d / f"{name}.key"
        out[f"{name}.crt"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_private(out[f"{name}.key"], _pem_key(key))
    sa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    out["sa.key"], out["sa.pub"] = d / "sa.key", d / "sa.pub"
    _write_private(out["sa.key"], _pem_key(sa))
    out["sa.pub"].write_bytes(sa.public_key().public_bytes(serialization.Encoding.PEM,
                                                          serialization.PublicFormat.SubjectPublicKeyInfo))
    return out


def _kubeconfig(path: Path, server: str, ca: Path, context: str, user: dict[str, str]) -> Path:
    doc = {"apiVersion": "v1", "kind": "Config", "current-context": context,
           "clusters": [{"name": context, "cluster": {"server": server, "certificate-authority": str(ca)}}],
           "users": [{"name": context, "user": user}],
           "contexts": [{"name": context, "context": {"cluster": context, "user": context}}]}
    _write_private(path, yaml.safe_dump(doc).encode())
    return path


@dataclass
class LocalKube:
    dir: Path
    url: str
    pki: dict[str, Path]
    admin_kubeconfig: Path
    supervisor: Supervisor
    etcd: Proc
    apiserver: Proc
    started_in: float  # seconds from launching kube-apiserver to /readyz answering ok
    _resources: dict[str, dict[str, tuple[str, bool]]] = field(default_factory=dict)
    _client: httpx.Client | None = None

    # -- HTTP as the admin -----------------------------------------------------------------------

    @property
    def client(self) -> httpx.Client:
        if self._client is None:
            ctx = ssl.create_default_context(cafile=str(self.pki["ca"]))
            ctx.load_cert_chain(str(self.pki["admin.crt"]), str(self.pki["admin.key"]))
            self._client = httpx.Client(base_url=self.url, verify=ctx, timeout=30.0)
        return self._client

    def request(self, method: str, path: str, body: Any = None, content_type: str = "application/json",
                params: dict[str, str] | None = None) -> httpx.Response:
        data = None if body is None else json.dumps(body).encode()
        return self.client.request(method, path, content=data, params=params,
                                   headers={"Content-Type": content_type, "Accept": "application/json"})

    def _check(self, r: httpx.Response, what: str) -> dict[str, Any]:
        if r.status_code >= 300:
            try:
                msg = r.json().get("message", r.text)
            except ValueError:
                msg = r.text
            raise KubeStartError(f"{what}: {r.status_code} {msg}")
        return r.json()  # type: ignore[no-any-return]

    def _base(self, api_version: str) -> str:
        return "/api/v1" if api_version == "v1" else f"/apis/{api_version}"

    def resource(self, api_version: str, kind: str) -> tuple[str, bool]:
        """(plural, namespaced) of a kind, from the server's discovery."""
        found = self._resources.get(api_version, {})
        if kind not in found:
            r = self.request("GET", self._base(api_version))
            found = {} if r.status_code == 404 else {
                res["kind"]: (res["name"], res["namespaced"])
                for res in self._check(r, f"discovery {api_version}")["resources"] if "/" not in res["name"]}
            self._resources[api_version] = found
        if kind not in found:
            raise KubeStartError(f"{api_version} {kind}: not served by the API server")
        return found[kind]

    def path(self, api_version: str, kind: str, namespace: str | None, name: str | None = None) -> str:
        plural, namespaced = self.resource(api_version, kind)
        p = self._base(api_version)
        if namespaced:
            p += f"/namespaces/{namespace or 'default'}"
        return p + f"/{plural}" + (f"/{name}" if name else "")

    def apply(self, docs: Iterable[dict[str, Any]], field_manager: str = "federation-local") -> list[dict[str, Any]]:
        """Server-side apply each manifest (as the admin); CRDs are waited for until established."""
        out = []
        for d in docs:
            if not d:
                continue
            meta = d.get("metadata") or {}
            where = self.path(d["apiVersion"], d["kind"], meta.get("namespace"), meta["name"])
            r = self.request("PATCH", where, d, APPLY, params={"fieldManager": field_manager, "force": "true"})
            out.append(self._check(r, f"apply {d['kind']} {meta.get('namespace', '')}/{meta['name']}"))
            if d["kind"] == "CustomResourceDefinition":
                self._established(d)
        return out

    def apply_file(self, path: Path) -> list[dict[str, Any]]:
        return self.apply(d for d in yaml.safe_load_all(path.read_text()) if d)

    def _established(self, crd: dict[str, Any]) -> None:
        name = crd["metadata"]["name"]
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        served = [v["name"] for v in crd["spec"]["versions"] if v.get("served")]

        def ready() -> bool:
            r = self.request("GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
            conds = {c["type"]: c["status"] for c in (self._check(r, name).get("status") or {}).get("conditions") or []}
            if conds.get("Established") != "True":
                return False
            for v in served:
                self._resources.pop(f"{group}/{v}", None)
                try:
                    self.resource(f"{group}/{v}", kind)
                except KubeStartError:
                    return False
            return True

        wait_for(ready, 60, f"CRD {name} established")

    def delete_all(self, api_version: str, kind: str, namespace: str | None = None) -> None:
        """Delete every object of a kind (in a namespace): what a test left behind."""
        r = self.request("DELETE", self.path(api_version, kind, namespace))
        if r.status_code != 404:
            self._check(r, f"delete {kind} in {namespace}")

    def ensure_namespace(self, name: str) -> None:
        self.apply([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}])

    def token(self, namespace: str, service_account: str, seconds: int = 24 * 3600) -> str:
        """A bound token for a ServiceAccount (TokenRequest API), as a Pod would be given."""
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                "spec": {"expirationSeconds": seconds}}
        r = self.request("POST", f"/api/v1/namespaces/{namespace}/serviceaccounts/{service_account}/token", body)
        return str(self._check(r, f"token for {namespace}/{service_account}")["status"]["token"])

    def token_kubeconfig(self, namespace: str, service_account: str, path: Path, context: str) -> Path:
        """A kubeconfig (mode 0600) acting as the ServiceAccount, with its RBAC and nothing more."""
        return _kubeconfig(path, self.url, self.pki["ca"], context, {"token": self.token(namespace, service_account)})

    # -- figures and lifecycle -------------------------------------------------------------------

    def rss_kib(self, which: str = "apiserver") -> int:
        p = self.apiserver if which == "apiserver" else self.etcd
        for line in Path(f"/proc/{p.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def stop(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        self.supervisor.stop(self.apiserver)
        self.supervisor.stop(self.etcd)


def _wait_http(url: str, proc: Proc, timeout: float, what: str, client: httpx.Client | None = None) -> None:
    def ok() -> bool:
        if not proc.alive():
            raise KubeStartError(f"{what} exited with {proc.popen.returncode}:\n{proc.tail(30)}")
        try:
            return (client.get(url) if client else httpx.get(url, timeout=2.0)).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(ok, timeout, what, interval=0.1)
    except TimeoutError:
        raise KubeStartError(f"{what} not ready after {timeout:g}s:\n{proc.tail(30)}") from None


def start(bin_dir: Path, work: Path, supervisor: Supervisor, *, crds: bool = True,
          timeout: float = 180.0) -> LocalKube:
    """etcd and kube-apiserver from ``bin_dir`` with state under ``work``; stops what it started
    when something fails on the way up."""
    work.mkdir(parents=True, exist_ok=True)
    pki = make_pki(work / "pki")
    client_port, peer_port, api_port = _free_port(), _free_port(), _free_port()
    etcd_url = f"http://127.0.0.1:{client_port}"
    peer = f"http://127.0.0.1:{peer_port}"
    etcd = supervisor.start("etcd", [
        str(bin_dir / "etcd"), "--name", "local", "--data-dir", str(work / "etcd"),
        "--listen-client-urls", etcd_url, "--advertise-client-urls", etcd_url,
        "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer, "--initial-cluster", f"local={peer}",
        "--log-level", "warn", "--unsafe-no-fsync", "--quota-backend-bytes", str(1 << 30)])
    api: Proc | None = None
    try:
        _wait_http(f"{etcd_url}/health", etcd, timeout, "etcd")
        t0 = time.monotonic()
        api = supervisor.start("kube-apiserver", [
            str(bin_dir / "kube-apiserver"),
            f"--etcd-servers={etcd_url}", "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
            f"--secure-port={api_port}", f"--tls-cert-file={pki['server.crt']}",
            f"--tls-private-key-file={pki['server.key']}", f"--client-ca-file={pki['ca']}",
            f"--service-account-key-file={pki['sa.pub']}", f"--service-account-signing-key-file={pki['sa.key']}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            "--service-cluster-ip-range=10.96.0.0/24", "--authorization-mode=RBAC",
            "--endpoint-reconciler-type=none", "--profiling=false", "--v=0",
            f"--cert-dir={work / 'pki'}"])
        url = f"https://127.0.0.1:{api_port}"
        kube = LocalKube(work, url, pki, _kubeconfig(work / "admin.kubeconfig", url, pki["ca"], "local-admin", {
            "client-certificate": str(pki["admin.crt"]), "client-key": str(pki["admin.key"])}),
            supervisor, etcd, api, 0.0)
        _wait_http(f"{url}/readyz", api, timeout, "kube-apiserver", kube.client)
        kube.started_in = time.monotonic() - t0
        if crds:
            for f in sorted(CRD_DIR.glob("*.yaml")):
                kube.apply_file(f)
        return kube
    except BaseException:
        if api is not None:
            supervisor.stop(api)
        supervisor.stop(etcd)
        raise
