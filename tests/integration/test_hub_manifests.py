"""The hub's deployment manifests (clusters/hub/): every Kustomize overlay builds with the real
``kubectl kustomize`` and every object passes ``kubernetes-validate --strict``; the Deployment's
arguments parse as ``fedctl hub run`` options, every file the example Fleet names is mounted from a
generated ConfigMap or Secret, a site overlay's files replace the placeholders; and the hub's
RBAC, server-side applied to a real kube-apiserver, grants exactly the calls the hub makes
(SubjectAccessReview for each, and for the neighbours it must not have), with no wildcard."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import typer
import yaml

from federation import specfiles
from federation.cli import main
from federation.core import spec as specs
from tests.real_kube import FLUX_NS, HUB_NS, Cluster

ROOT = Path(__file__).resolve().parents[2]
HUB = ROOT / "clusters" / "hub"
OVERLAYS = {"single": HUB / "overlays" / "single", "ha": HUB / "overlays" / "ha"}
MEMBER_BASES = {"member": HUB / "member", "mesh": HUB / "mesh"}
K8S_VERSION = "1.37.0"
RBAC_KINDS = {"Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding", "ServiceAccount"}
HUB_SA = f"system:serviceaccount:{HUB_NS}:federation-hub"
MEMBER_SA = f"system:serviceaccount:{FLUX_NS}:federation-hub"

# What the hub calls, as (namespace or None for any, API group, resource, verb): the code paths are
# federation/runtimes/leases.py and federation/hub/store.py (through runtimes/kubernetes.py) on the
# hub's own cluster; runtimes/kubernetes.py FluxZone, server_side_apply and get_object on members.
HUB_CALLS = {
    (HUB_NS, "coordination.k8s.io", "leases", "get"),      # Lease.try_acquire, Shards._orphaned
    (HUB_NS, "coordination.k8s.io", "leases", "create"),   # the first holder
    (HUB_NS, "coordination.k8s.io", "leases", "update"),   # renew/take over at the version read; release
    (HUB_NS, "", "configmaps", "get"),                      # ConfigMapStore.load, commands
    (HUB_NS, "", "configmaps", "list"),                     # keys() by label selector
    (HUB_NS, "", "configmaps", "create"),                   # put_configmap without a version
    (HUB_NS, "", "configmaps", "update"),                   # put_configmap at the version read
    (HUB_NS, "", "configmaps", "delete"),                   # a consumed operator command
    ("shop", "", "events", "create"),                       # emit_event, in the canary's namespace
}
MEMBER_CALLS = {
    ("shop", "apps", "deployments/status", "get"),                             # deployment_ready
    (FLUX_NS, "kustomize.toolkit.fluxcd.io", "kustomizations", "get"),         # FluxZone.status
    (FLUX_NS, "kustomize.toolkit.fluxcd.io", "kustomizations", "patch"),       # request_reconcile
    (FLUX_NS, "source.toolkit.fluxcd.io", "gitrepositories", "patch"),         # request_reconcile
    ("shop", "metrics.keptn.sh", "keptnmetrics", "get"),                       # keptn metric provider
    ("shop", "metrics.keptn.sh", "analyses", "create"),                        # keptn analysis/... queries
    ("shop", "metrics.keptn.sh", "analyses", "get"),
    ("shop", "metrics.keptn.sh", "analyses", "delete"),
}
MESH_CALLS = {(ns, group, res, verb) for group, resources in (
    ("kuma.io", ("meshhttproutes", "trafficroutes")), ("gateway.networking.k8s.io", ("httproutes",)),
    ("split.smi-spec.io", ("trafficsplits",)), ("networking.istio.io", ("virtualservices", "destinationrules")))
    for res in resources for verb in ("get", "create", "patch") for ns in ("kuma-system",)}
# Neighbours of those calls the accounts must not have.
HUB_DENIED = {
    (HUB_NS, "", "secrets", "get"), (HUB_NS, "", "secrets", "list"), (HUB_NS, "", "configmaps", "watch"),
    (HUB_NS, "", "configmaps", "patch"), ("shop", "", "configmaps", "get"), ("kube-system", "", "configmaps", "list"),
    (HUB_NS, "coordination.k8s.io", "leases", "delete"), (HUB_NS, "coordination.k8s.io", "leases", "list"),
    ("kube-system", "coordination.k8s.io", "leases", "update"), ("shop", "", "events", "delete"),
    ("shop", "", "events", "patch"), ("shop", "apps", "deployments", "get"), (HUB_NS, "", "pods", "list"),
    (None, "rbac.authorization.k8s.io", "clusterroles", "create"),
}
MEMBER_DENIED = {
    ("shop", "metrics.keptn.sh", "analyses", "list"), ("shop", "metrics.keptn.sh", "analyses/status", "update"),
    ("shop", "apps", "deployments", "get"), ("shop", "apps", "deployments", "list"), ("shop", "apps", "deployments", "patch"),
    ("shop", "apps", "deployments", "delete"), ("shop", "apps", "deployments/status", "update"), ("shop", "", "secrets", "get"),
    (FLUX_NS, "kustomize.toolkit.fluxcd.io", "kustomizations", "delete"),
    (FLUX_NS, "kustomize.toolkit.fluxcd.io", "kustomizations", "update"),
    (FLUX_NS, "source.toolkit.fluxcd.io", "gitrepositories", "get"), (FLUX_NS, "", "secrets", "list"),
    ("kuma-system", "kuma.io", "meshhttproutes", "delete"), ("kuma-system", "kuma.io", "meshes", "patch"),
    (HUB_NS, "", "configmaps", "create"), (HUB_NS, "coordination.k8s.io", "leases", "get"),
}


def kubectl() -> str:
    path = shutil.which("kubectl")
    if path is None:
        pytest.fail("kubectl (for `kubectl kustomize`) is not on PATH: install Debian's kubectl or the kubectl binary")
    return path


def build(path: Path) -> list[dict[str, Any]]:
    r = subprocess.run([kubectl(), "kustomize", str(path)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"kubectl kustomize {path}: {r.stderr}"
    return [d for d in yaml.safe_load_all(r.stdout) if d]


def one(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"].startswith(name))]
    assert len(found) == 1, f"{kind} {name}: {[d['metadata']['name'] for d in found]}"
    return found[0]


@pytest.mark.parametrize("path", [*OVERLAYS.values(), *MEMBER_BASES.values()], ids=[*OVERLAYS, *MEMBER_BASES])
def test_every_object_of_every_overlay_validates_strictly(path: Path):
    docs = build(path)
    assert docs
    for d in docs:
        where = f"{path.relative_to(ROOT)}: {d['kind']} {d['metadata'].get('name')}"
        try:
            kubernetes_validate.validate(d, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{where}: {exc.message} at {'/'.join(map(str, exc.path))}")


def test_validation_catches_a_bad_field():
    """The check can fail: a field the schema does not know, and a wrong type."""
    dep = one(build(OVERLAYS["single"]), "Deployment")
    dep["spec"]["template"]["spec"]["containers"][0]["securityContext"]["runAsNonRot"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(dep, K8S_VERSION, strict=True)
    dep = one(build(OVERLAYS["ha"]), "Deployment")
    dep["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(dep, K8S_VERSION, strict=True)


def hub_run_params(args: list[str]) -> dict[str, Any]:
    """The container's arguments parsed by the real ``fedctl hub run`` command line (nothing runs)."""
    assert args[:2] == ["hub", "run"], args
    app = typer.main.get_command(main.app)
    run = app.commands["hub"].commands["run"]  # type: ignore[attr-defined]
    ctx = run.make_context("run", list(args[2:]), resilient_parsing=False)
    return dict(ctx.params)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_pod_is_locked_down_and_runs_fedctl_hub_run(overlay: str):
    docs = build(OVERLAYS[overlay])
    dep = one(docs, "Deployment", "federation-hub")
    pod = dep["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]} and sc["runAsNonRoot"] is True
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz" and c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert {"cpu", "memory"} <= c["resources"]["requests"].keys() and "memory" in c["resources"]["limits"]
    params = hub_run_params(c["args"])
    port = int(params["listen"].rpartition(":")[2])
    assert c["ports"][0]["containerPort"] == port
    svc = one(docs, "Service")
    assert svc["spec"]["selector"] == dep["spec"]["selector"]["matchLabels"]
    netpol = one(docs, "NetworkPolicy")
    assert netpol["spec"]["podSelector"]["matchLabels"] == dep["spec"]["selector"]["matchLabels"]
    assert {p["port"] for r in netpol["spec"]["ingress"] for p in r["ports"]} == {port}
    # Writable places are volumes: the state dir, /tmp (Git's askpass) and HOME.
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    env = {e["name"]: e.get("value") for e in c["env"]}
    for writable in (str(params["state_dir"]), "/tmp", env["HOME"]):
        assert writable in mounts and not mounts[writable].get("readOnly"), writable
    if overlay == "single":
        assert dep["spec"]["replicas"] == 1 and dep["spec"]["strategy"]["type"] == "Recreate"
        assert params["lease_namespace"] is None and params["state_store"] == "file"
        state = next(v for v in pod["volumes"] if v["name"] == mounts[str(params["state_dir"])]["name"])
        pvc = one(docs, "PersistentVolumeClaim")
        assert state == {"name": "state", "persistentVolumeClaim": {"claimName": pvc["metadata"]["name"]}}
        assert pod["automountServiceAccountToken"] is False  # this hub calls no API of its cluster
        assert not [d for d in docs if d["kind"] == "PodDisruptionBudget"]
    else:
        assert dep["spec"]["replicas"] >= 2
        assert params["lease_namespace"] == HUB_NS and params["state_store"] == "configmap"
        assert {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}} in c["env"]
        pdb = one(docs, "PodDisruptionBudget")
        assert pdb["spec"]["selector"]["matchLabels"] == dep["spec"]["selector"]["matchLabels"]
        assert pdb["spec"]["minAvailable"] < dep["spec"]["replicas"]
        anti = pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        assert anti[0]["topologyKey"] == "kubernetes.io/hostname"
    assert one(docs, "Namespace")["metadata"]["name"] == HUB_NS
    assert {d["metadata"].get("namespace") for d in docs if d["kind"] not in ("Namespace", "ClusterRole",
                                                                                "ClusterRoleBinding")} == {HUB_NS}


def mounted_files(docs: list[dict[str, Any]]) -> dict[str, tuple[str, str]]:
    """Every file the hub's container sees from a generated object: path -> (kind, object name)."""
    dep = one(docs, "Deployment", "federation-hub")
    pod = dep["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    by_name = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    out = {}
    for m in pod["containers"][0]["volumeMounts"]:
        v = volumes[m["name"]]
        ref = (("ConfigMap", v["configMap"]["name"]) if "configMap" in v else
               ("Secret", v["secret"]["secretName"]) if "secret" in v else None)
        if ref is None:
            continue
        assert ref in by_name, f"volume {m['name']} names {ref}, which the build does not generate"
        assert m.get("readOnly") is True
        for key in by_name[ref].get("data") or {}:
            out[f"{m['mountPath']}/{key}"] = ref
    return out


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_file_the_fleet_and_the_hub_read_is_mounted(overlay: str, tmp_path: Path):
    docs = build(OVERLAYS[overlay])
    files = mounted_files(docs)
    c = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    params = hub_run_params(c["args"])
    assert str(params["fleet"]) in files and str(params["token_file"]) in files
    assert files[str(params["token_file"])][0] == "Secret"
    # The example Fleet, as mounted, is valid, and every path it names is one of the mounted files.
    fleet_cm = next(d for (kind, name), d in {(d["kind"], d["metadata"]["name"]): d for d in docs}.items()
                    if (kind, name) == files[str(params["fleet"])])
    (tmp_path / "fleet.yaml").write_text(fleet_cm["data"]["fleet.yaml"])
    fleet = specfiles.load_one(tmp_path / "fleet.yaml", specs.Fleet)
    named = []
    for z in fleet.spec.zones:
        named += [z.kubeconfig.path if z.kubeconfig else None, z.known_hosts, z.identity_file]
        auth = z.git.auth
        named += [auth.token_file, auth.ssh_key_file, auth.ssh_known_hosts] if auth else []
    named += [fleet.spec.mesh.kubeconfig.path if fleet.spec.mesh.kubeconfig else None]
    named = [p for p in named if p]
    assert len(named) >= 8
    for path in named:
        assert path in files, f"the Fleet names {path}, which nothing mounts (mounted: {sorted(files)})"
        assert files[path][0] == "Secret", path
    # One kubeconfig per member cluster: each zone of kind kubernetes and the mesh's control plane.
    kubeconfigs = {p for p in files if p.startswith("/etc/federation/kubeconfigs/")}
    assert kubeconfigs == {z.kubeconfig.path for z in fleet.spec.zones if z.kubeconfig} | {
        fleet.spec.mesh.kubeconfig.path if fleet.spec.mesh.kubeconfig else ""}


def test_a_site_overlay_replaces_the_placeholders(tmp_path: Path):
    """How a user deploys (docs/deployment.md): a kustomization of their own over an overlay,
    replacing each generator's files; names get new hashes and the Deployment follows them."""
    site = tmp_path / "site"
    (site / "secrets").mkdir(parents=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(site / "secrets" / "hub_ed25519")],
                   check=True)
    contents = {"api-token": "a" * 64, "vms-known_hosts": "vm1 ssh-ed25519 AAAAC3Nza\n", "git-token": "g" * 40,
                "git-known_hosts": "git.example.com ssh-ed25519 AAAAC3Nzb\n", "eks": "apiVersion: v1\nkind: Config\n",
                "onprem": "apiVersion: v1\nkind: Config\n", "kuma-global": "apiVersion: v1\nkind: Config\n"}
    for name, text in contents.items():
        (site / "secrets" / name).write_text(text)
    (site / "fleet.yaml").write_text((HUB / "base" / "files" / "fleet.yaml").read_text()
                                     .replace("name: production", "name: acme"))
    (site / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": [os.path.relpath(OVERLAYS["ha"], site)],
        "configMapGenerator": [{"name": "federation-fleet", "behavior": "replace", "files": ["fleet.yaml"]}],
        "secretGenerator": [
            {"name": "federation-api-token", "behavior": "replace", "files": ["token=secrets/api-token"]},
            {"name": "federation-ssh", "behavior": "replace",
             "files": ["id_ed25519=secrets/hub_ed25519", "known_hosts=secrets/vms-known_hosts"]},
            {"name": "federation-git", "behavior": "replace",
             "files": ["token=secrets/git-token", "id_ed25519=secrets/hub_ed25519", "known_hosts=secrets/git-known_hosts"]},
            {"name": "federation-kubeconfigs", "behavior": "replace",
             "files": ["eks=secrets/eks", "onprem=secrets/onprem", "kuma-global=secrets/kuma-global"]}]}))
    docs = build(site)  # the repo's overlay by relative path (a site may name a Git URL instead)
    base_names = {d["metadata"]["name"] for d in build(OVERLAYS["ha"]) if d["kind"] in ("Secret", "ConfigMap")}
    files = mounted_files(docs)
    secrets = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Secret"}

    def data(path: str) -> str:
        return base64.b64decode(secrets[files[path][1]]["data"][path.rsplit("/", 1)[1]]).decode()

    assert data("/etc/federation/api/token") == contents["api-token"]
    assert data("/etc/federation/ssh/id_ed25519").startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    assert data("/etc/federation/kubeconfigs/eks") == contents["eks"]
    assert data("/etc/federation/git/known_hosts") == contents["git-known_hosts"]
    assert not base_names & {n for _, n in files.values()}  # new content, new names: the pods roll
    for d in docs:
        kubernetes_validate.validate(d, K8S_VERSION, strict=True)


# ----------------------------------------------------------------------------- RBAC on a real API server


def rbac_rules(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for d in docs if d["kind"] in ("Role", "ClusterRole") for r in d["rules"]]


def granted(docs: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    return {(g, res, v) for r in rbac_rules(docs) for g in r["apiGroups"] for res in r["resources"] for v in r["verbs"]}


def test_rbac_has_no_wildcard_and_grants_exactly_the_calls():
    hub = build(OVERLAYS["ha"])
    assert build(OVERLAYS["single"]) and granted(build(OVERLAYS["single"])) == granted(hub)
    member, mesh = build(MEMBER_BASES["member"]), build(MEMBER_BASES["mesh"])
    for docs in (hub, member, mesh):
        for rule in rbac_rules(docs):
            for field in ("apiGroups", "resources", "verbs", "resourceNames", "nonResourceURLs"):
                assert "*" not in rule.get(field, []) and not any("*" in x for x in rule.get(field, [])), rule
    assert granted(hub) == {(g, res, v) for _, g, res, v in HUB_CALLS}
    assert granted(member) == {(g, res, v) for _, g, res, v in MEMBER_CALLS}
    assert granted(mesh) == {(g, res, v) for _, g, res, v in MEMBER_CALLS | MESH_CALLS}


def review(k8s: Cluster, user: str, call: tuple[str | None, str, str, str]) -> bool:
    """``kubectl auth can-i`` through the API: a SubjectAccessReview for the ServiceAccount."""
    ns, group, resource, verb = call
    res, _, sub = resource.partition("/")
    attrs: dict[str, Any] = {"group": group, "resource": res, "verb": verb}
    if sub:
        attrs["subresource"] = sub
    if ns:
        attrs["namespace"] = ns
    sa_ns = user.split(":")[2]
    body = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
            "spec": {"user": user, "groups": ["system:serviceaccounts", f"system:serviceaccounts:{sa_ns}",
                                              "system:authenticated"], "resourceAttributes": attrs}}
    r = k8s.server.request("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", body)
    assert r.status_code == 201, r.text
    return bool(r.json()["status"].get("allowed"))


def test_the_rendered_rbac_on_a_real_api_server_allows_each_call_and_nothing_near(k8s: Cluster):
    for path in (OVERLAYS["ha"], MEMBER_BASES["mesh"]):
        k8s.server.apply([d for d in build(path) if d["kind"] in RBAC_KINDS], field_manager="kustomize-test")
    denied_hub = [c for c in sorted(HUB_CALLS, key=str) if not review(k8s, HUB_SA, c)]
    assert denied_hub == []
    allowed_hub = [c for c in sorted(HUB_DENIED, key=str) if review(k8s, HUB_SA, c)]
    assert allowed_hub == []
    denied_member = [c for c in sorted(MEMBER_CALLS | MESH_CALLS, key=str) if not review(k8s, MEMBER_SA, c)]
    assert denied_member == []
    allowed_member = [c for c in sorted(MEMBER_DENIED, key=str) if review(k8s, MEMBER_SA, c)]
    assert allowed_member == []
    # Events in any canary's namespace, not only one.
    assert review(k8s, HUB_SA, ("payments", "", "events", "create"))
