"""docs/deployment.md runs as written: its ``sh`` blocks, in order, in one shell. One real
kube-apiserver (the session's) plays the hub cluster, the EKS and on-prem clusters and Kuma's
control plane (four admin contexts pointing at it); an OpenSSH server on loopback plays the VMs.
What the guide promises is then checked on the API server and in what its commands wrote."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

import yaml

from federation.demo.procs import Supervisor
from tests.integration.sshd import keygen, start_sshd
from tests.real_kube import HUB_NS, Cluster

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "deployment.md"
CONTEXTS = {"HUB_CONTEXT": "hub-admin", "EKS_CONTEXT": "eks-admin", "ONPREM_CONTEXT": "onprem-admin",
            "MESH_CONTEXT": "kuma-admin"}


def blocks() -> list[str]:
    import re

    return re.findall(r"^```sh\n(.*?)^```", DOC.read_text(), flags=re.S | re.M)


def admin_kubeconfig(k8s: Cluster, path: Path) -> None:
    """Four admin contexts, credentials embedded (the guide reads the CA data from them)."""
    pki = k8s.server.pki

    def b64(p: Path) -> str:
        return base64.b64encode(p.read_bytes()).decode()

    doc = {"apiVersion": "v1", "kind": "Config", "current-context": "hub-admin",
           "clusters": [{"name": "local", "cluster": {"server": k8s.server.url, "certificate-authority-data": b64(pki["ca"])}}],
           "users": [{"name": "admin", "user": {"client-certificate-data": b64(pki["admin.crt"]),
                                                "client-key-data": b64(pki["admin.key"])}}],
           "contexts": [{"name": c, "context": {"cluster": "local", "user": "admin"}} for c in CONTEXTS.values()]}
    path.write_text(yaml.safe_dump(doc))
    path.chmod(0o600)


def test_the_deployment_guide_runs(k8s: Cluster, tmp_path: Path):
    parts = blocks()
    assert len(parts) >= 10
    procs = Supervisor(tmp_path / "logs")
    admin_pub = keygen(tmp_path / "admin_key")
    vm = tmp_path / "vm"
    vm.mkdir()
    port = start_sshd(vm, procs, admin_pub + "\n", root_login="prohibit-password", sftp=True)
    admin_kubeconfig(k8s, tmp_path / "kubeconfig")
    (tmp_path / "clusters").symlink_to(ROOT / "clusters")
    # The user's edit of the example Fleet: their VM (this sshd) instead of the example's hosts.
    fleet = yaml.safe_load((ROOT / "clusters" / "hub" / "base" / "files" / "fleet.yaml").read_text())
    vms = next(z for z in fleet["spec"]["zones"] if z["name"] == "vms")
    vms["hosts"] = [{"address": "127.0.0.1", "port": port, "user": "root"}]
    vms["ingress"].pop("adminPort")
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "fleet.yaml").write_text(yaml.safe_dump(fleet, sort_keys=False))
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEDERATION_")}
    env.update({**CONTEXTS, "PATH": f"{Path(sys.executable).parent}:{env.get('PATH', '')}", "HOME": str(tmp_path),
                "KUBECONFIG": str(tmp_path / "kubeconfig"), "REGISTRY": "registry.test/platform",
                "VMS": f"127.0.0.1:{port}", "ADMIN_USER": "root", "ADMIN_KEY": str(tmp_path / "admin_key"),
                "AGENT_PREFIX": str(vm / "opt"), "AGENT_STATE": str(vm / "state"),
                "AGENT_KEYS": str(vm / "authorized_keys"), "VM_PYTHON": sys.executable})
    script = "set -euo pipefail\n" + "".join(f"echo '### block {i}' >&2\n{b}" for i, b in enumerate(parts))
    try:
        r = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
        out = r.stdout
        assert out.count("yes\n") >= 2  # the member account may patch Kustomizations, read deployments/status
        assert "\n4\n" in f"\n{out}"  # four Secrets rendered
        assert "installed" in out and "protocol 1" in out  # agents install, handshake with the hub's key
        site = tmp_path / "site" / "etc" / "federation"
        kc = yaml.safe_load((site / "kubeconfigs" / "eks").read_text())
        assert kc["current-context"] == "eks" and kc["users"][0]["user"]["token"]
        # On the hub cluster: what the site applied, with the user's image and files.
        dep = k8s.admin.apps.read_namespaced_deployment("federation-hub", HUB_NS)
        assert dep.spec.replicas == 2 and out.rstrip().endswith("2")
        (c,) = dep.spec.template.spec.containers
        assert c.image == "registry.test/platform/federation-hub:0.1.0" and "--lease-namespace" in c.args
        token_secret = next(v.secret.secret_name for v in dep.spec.template.spec.volumes if v.name == "api-token")
        data = k8s.admin.core.read_namespaced_secret(token_secret, HUB_NS).data["token"]
        assert base64.b64decode(data).decode() == (site / "api" / "token").read_text()
        ssh_secret = next(v.secret.secret_name for v in dep.spec.template.spec.volumes if v.name == "ssh")
        known = base64.b64decode(k8s.admin.core.read_namespaced_secret(ssh_secret, HUB_NS).data["known_hosts"]).decode()
        assert f"[127.0.0.1]:{port} ssh-ed25519" in known
        assert (vm / "opt" / "fed-agent.pyz").exists()
    finally:
        procs.stop_all()
        for api_version, kind in (("apps/v1", "Deployment"), ("v1", "Service"), ("v1", "Secret"),
                                  ("networking.k8s.io/v1", "NetworkPolicy"), ("policy/v1", "PodDisruptionBudget")):
            k8s.server.delete_all(api_version, kind, HUB_NS)
