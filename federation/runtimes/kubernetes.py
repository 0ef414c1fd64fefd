"""The one owner of the official ``kubernetes`` client: Flux convergence, readiness, reconcile
requests, Events, server-side apply, and Lease-based leader election and sharding.

The client is synchronous; every call runs in a thread (``asyncio.to_thread``) with a request
timeout, and API errors become our error types. The hub only reads member clusters — except the
``reconcile.fluxcd.io/requestedAt`` annotation, which asks Flux to reconcile now.
Callers: ``runtimes.flux`` (zones of kind kubernetes), ``runtimes.routes`` (mesh routes),
``runtimes.leases`` and ``hub.store`` (HA), tests against the emulator.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
from dataclasses import dataclass
from typing import Any

from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError as Urllib3Error

from federation.core.errors import PermanentError, TemporaryError
from federation.core.spec import Kubeconfig, Zone

log = logging.getLogger("federation.kubernetes")

FLUX_KS = ("kustomize.toolkit.fluxcd.io", "v1", "kustomizations")
FLUX_GIT = ("source.toolkit.fluxcd.io", "v1", "gitrepositories")
RECONCILE = "reconcile.fluxcd.io/requestedAt"


def api_client(kc: Kubeconfig | None, timeout: float = 10.0) -> k8s.ApiClient:
    try:
        if kc is not None and kc.in_cluster:
            k8s_config.load_incluster_config()  # type: ignore[no-untyped-call]
            return k8s.ApiClient()
        client: k8s.ApiClient = k8s_config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=kc.path if kc else None, context=kc.context if kc else None)
        return client
    except (k8s_config.ConfigException, OSError) as exc:
        raise PermanentError(f"kubeconfig: {exc}") from None


def _message(exc: ApiException) -> str:
    """The API's own words (its Status ``message``), bounded; empty when the body has none."""
    try:
        return str(json.loads(exc.body or "{}").get("message", ""))[:300]
    except (ValueError, AttributeError):
        return ""


def _error(what: str, exc: Exception) -> Exception:
    if isinstance(exc, ApiException):
        detail = _message(exc)
        if exc.status in (401, 403):
            # The API's message names the account, verb and resource refused. An API server that has
            # just started refuses too, until its authorizer's caches fill: the next tick asks again.
            return PermanentError(f"{what}: access denied ({exc.status})" + (f": {detail}" if detail else "") +
                                  ": check the hub's RBAC (or the API server has just restarted)")
        if exc.status == 404:
            return PermanentError(f"{what}: not found")
        return TemporaryError(f"{what}: API answered {exc.status} {exc.reason}" + (f": {detail}" if detail else ""))
    return TemporaryError(f"{what}: {type(exc).__name__}: {exc}")


class Api:
    """Thin, typed calls with timeouts and retries; one per cluster."""

    def __init__(self, api: k8s.ApiClient, timeout: float = 10.0, retries: int = 2) -> None:
        self.api = api
        self.custom = k8s.CustomObjectsApi(api)
        self.apps = k8s.AppsV1Api(api)
        self.core = k8s.CoreV1Api(api)
        self.coordination = k8s.CoordinationV1Api(api)
        self.timeout = timeout
        self.retries = retries

    def close(self) -> None:
        """Close the client's pooled connections (idempotent)."""
        self.api.close()  # type: ignore[no-untyped-call]

    async def call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("_request_timeout", self.timeout)
        for attempt in range(self.retries + 1):
            try:
                return await asyncio.to_thread(fn, *args, **kwargs)
            except ApiException as exc:
                if exc.status in (409, 404, 401, 403, 422) or attempt == self.retries:
                    raise
                await asyncio.sleep(0.2 * 2 ** attempt)
            except (Urllib3Error, OSError) as exc:
                if attempt == self.retries:
                    raise _error(what, exc) from None
                await asyncio.sleep(0.2 * 2 ** attempt)
        raise TemporaryError(f"{what}: retries exhausted")


# ----------------------------------------------------------------------------- Flux convergence


@dataclass(frozen=True)
class FluxStatus:
    revision: str | None  # the commit Flux last applied (sha), from status.lastAppliedRevision
    ready: bool
    stalled: bool
    reason: str
    message: str

    @property
    def failing(self) -> bool:
        return self.stalled or (not self.ready and self.reason not in ("", "Progressing", "ProgressingWithRetry"))


def _sha(revision: str | None) -> str | None:
    # Flux v2 writes "main@sha1:<sha>" (older: "main/<sha>").
    if not revision:
        return None
    for sep in ("@sha1:", "@sha256:", "/"):
        if sep in revision:
            return revision.rsplit(sep, 1)[1]
    return revision


def flux_status(obj: dict[str, Any]) -> FluxStatus:
    status = obj.get("status") or {}
    conds = {c.get("type"): c for c in status.get("conditions") or []}
    ready = conds.get("Ready", {})
    stalled = conds.get("Stalled", {})
    # A status for an older generation says nothing about the current spec.
    current = status.get("observedGeneration", -1) >= (obj.get("metadata") or {}).get("generation", 0)
    return FluxStatus(_sha(status.get("lastAppliedRevision")), ready.get("status") == "True" and current,
                      stalled.get("status") == "True", str(ready.get("reason", "")),
                      str(ready.get("message", "")))


class FluxZone:
    """One Kubernetes zone: its Flux Kustomization applies the zone's Git path."""

    def __init__(self, api: Api, namespace: str = "flux-system", kustomization: str = "zone",
                 git_repository: str | None = None) -> None:
        self.api = api
        self.namespace = namespace
        self.kustomization = kustomization
        self.git_repository = git_repository or kustomization

    async def status(self) -> FluxStatus:
        g, v, p = FLUX_KS
        try:
            obj = await self.api.call("Kustomization", self.api.custom.get_namespaced_custom_object,
                                      g, v, self.namespace, p, self.kustomization)
        except ApiException as exc:
            raise _error(f"Kustomization {self.namespace}/{self.kustomization}", exc) from None
        return flux_status(obj)

    async def request_reconcile(self, now: dt.datetime | None = None) -> str:
        """Annotate the GitRepository and the Kustomization so Flux reconciles now."""
        stamp = (now or dt.datetime.now(dt.UTC)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        body = {"metadata": {"annotations": {RECONCILE: stamp}}}
        for (g, v, p), name in ((FLUX_GIT, self.git_repository), (FLUX_KS, self.kustomization)):
            try:
                await self.api.call(f"{p}/{name}", self.api.custom.patch_namespaced_custom_object,
                                    g, v, self.namespace, p, name, body)
            except ApiException as exc:
                raise _error(f"{p} {self.namespace}/{name}", exc) from None
        return stamp

    async def deployment_ready(self, namespace: str, name: str, threshold: int, labels: dict[str, str] | None = None,
                               image: str | None = None) -> tuple[float | None, str]:
        """Percent of replicas available (None when missing) and a reason when progress stopped.

        With ``labels`` (what the hub rendered it with), a Deployment of that name without them is
        not the hub's: its status is not counted (None). With ``image``, one whose pod template runs
        another image has not been given the zone repo's definition yet: 0 percent."""
        try:
            d = await self.api.call("Deployment", self.api.apps.read_namespaced_deployment_status, name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None, f"deployment {namespace}/{name} not found"
            raise _error(f"deployment {namespace}/{name}", exc) from None
        have = (d.metadata.labels or {}) if d.metadata else {}
        wrong = {k: v for k, v in (labels or {}).items() if have.get(k) != v}
        if wrong:
            return None, (f"deployment {namespace}/{name} was not rendered by the hub (labels "
                          f"{', '.join(f'{k}={v}' for k, v in sorted(wrong.items()))} missing): not counted")
        containers = d.spec.template.spec.containers if d.spec and d.spec.template and d.spec.template.spec else []
        images = [c.image for c in containers or []]
        if image is not None and image not in images:
            return 0.0, (f"deployment {namespace}/{name} runs {', '.join(map(str, images)) or 'no image'}, "
                         f"the zone repo has {image}: not applied yet")
        spec_replicas = d.spec.replicas if d.spec and d.spec.replicas is not None else 1
        st = d.status
        available = (st.available_replicas or 0) if st else 0
        updated = (st.updated_replicas or 0) if st else 0
        reason = ""
        for c in (st.conditions or []) if st else []:
            if c.type == "Progressing" and c.reason == "ProgressDeadlineExceeded":
                reason = f"deployment {namespace}/{name}: {PROGRESS_DEADLINE}"
        if st is not None and (st.observed_generation or 0) < (d.metadata.generation or 0):
            return 0.0, reason or "rollout not observed yet"
        if spec_replicas == 0:
            return 100.0, reason
        pct = 100.0 * min(available, updated) / spec_replicas
        return pct, reason if reason else ("" if pct >= threshold else f"{available}/{spec_replicas} available")


PROGRESS_DEADLINE = "progress deadline exceeded (ProgressDeadlineExceeded)"


def _plural(kind: str) -> str:
    k = kind.lower()
    if k.endswith("sis"):  # Analysis -> analyses
        return k[:-3] + "ses"
    return k + ("es" if k.endswith("s") else "s")


async def get_object(api: Api, api_version: str, kind: str, namespace: str | None, name: str) -> dict[str, Any] | None:
    """A custom object (a mesh route) read back; None when it does not exist."""
    group, _, version = api_version.rpartition("/")
    try:
        if namespace:
            return await api.call(kind, api.custom.get_namespaced_custom_object, group, version, namespace,  # type: ignore[no-any-return]
                                  _plural(kind), name)
        return await api.call(kind, api.custom.get_cluster_custom_object, group, version, _plural(kind), name)  # type: ignore[no-any-return]
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise _error(f"{kind} {name}", exc) from None


class ZoneObjects:
    """Reads objects from each Kubernetes zone's API, one client per zone kept until ``close``
    (``metrics.backends.keptn``: a KeptnMetric's status)."""

    def __init__(self, timeout: float = 10.0) -> None:
        self.timeout = timeout
        self._apis: dict[str, Api] = {}

    def _api(self, zone: Zone) -> Api:
        if zone.name not in self._apis:
            self._apis[zone.name] = Api(api_client(zone.kubeconfig, self.timeout), self.timeout)
        return self._apis[zone.name]

    async def get(self, zone: Zone, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        return await get_object(self._api(zone), api_version, kind, namespace, name)

    async def create(self, zone: Zone, manifest: dict[str, Any]) -> None:
        """Create a namespaced custom object (a Keptn Analysis) in the zone."""
        api = self._api(zone)
        group, _, version = manifest["apiVersion"].rpartition("/")
        ns, kind = manifest["metadata"]["namespace"], manifest["kind"]
        try:
            await api.call("create", api.custom.create_namespaced_custom_object, group, version, ns, _plural(kind),
                           manifest)
        except ApiException as exc:
            raise _error(f"create {kind} {manifest['metadata']['name']}", exc) from None

    async def delete(self, zone: Zone, api_version: str, kind: str, namespace: str, name: str) -> None:
        """Delete a namespaced custom object; one already gone is fine."""
        api = self._api(zone)
        group, _, version = api_version.rpartition("/")
        try:
            await api.call("delete", api.custom.delete_namespaced_custom_object, group, version, namespace,
                           _plural(kind), name)
        except ApiException as exc:
            if exc.status != 404:
                raise _error(f"delete {kind} {name}", exc) from None

    def close(self) -> None:
        for api in self._apis.values():
            api.close()
        self._apis.clear()


async def server_side_apply(api: Api, manifest: dict[str, Any], field_manager: str = "federation") -> dict[str, Any]:
    """Direct mode (a mesh without GitOps): apply a rendered route on the mesh's control-plane cluster."""
    group, _, version = manifest["apiVersion"].rpartition("/")
    plural = _plural(manifest["kind"])
    ns = (manifest.get("metadata") or {}).get("namespace")
    name = manifest["metadata"]["name"]
    try:
        applied: dict[str, Any]
        if ns:
            applied = await api.call("apply", api.custom.patch_namespaced_custom_object, group, version, ns, plural,
                                     name, manifest, field_manager=field_manager, force=True,
                                     _content_type="application/apply-patch+yaml")
        else:
            applied = await api.call("apply", api.custom.patch_cluster_custom_object, group, version, plural, name,
                                     manifest, field_manager=field_manager, force=True,
                                     _content_type="application/apply-patch+yaml")
        return applied
    except ApiException as exc:
        raise _error(f"apply {manifest['kind']} {name}", exc) from None


async def emit_event(api: Api, involved: dict[str, str], reason: str, message: str,
                     kind: str = "Normal", now: dt.datetime | None = None) -> None:
    """A core/v1 Event on the hub's cluster for a rollout's phase change, in the namespace of the
    object it names (the API server refuses an Event whose namespace differs from its
    involvedObject's)."""
    namespace = involved["namespace"]
    t = now or dt.datetime.now(dt.UTC)
    body = k8s.CoreV1Event(
        metadata=k8s.V1ObjectMeta(generate_name=f"{involved['name']}.", namespace=namespace),
        involved_object=k8s.V1ObjectReference(**involved), reason=reason, message=message[:1024], type=kind,
        first_timestamp=t, last_timestamp=t, count=1, source=k8s.V1EventSource(component="federation-hub"))
    try:
        await api.call("event", api.core.create_namespaced_event, namespace, body)
    except ApiException as exc:
        raise _error("event", exc) from None


# ----------------------------------------------------------------------------- ConfigMaps (state)


class Conflict(TemporaryError):
    """Somebody else wrote the object since we read it (HTTP 409 on a stale resourceVersion)."""


@dataclass(frozen=True)
class ConfigMapData:
    name: str
    data: dict[str, str]
    annotations: dict[str, str]
    resource_version: str


def _configmap(obj: Any) -> ConfigMapData:
    return ConfigMapData(obj.metadata.name, dict(obj.data or {}), dict(obj.metadata.annotations or {}),
                         str(obj.metadata.resource_version))


async def get_configmap(api: Api, namespace: str, name: str) -> ConfigMapData | None:
    try:
        return _configmap(await api.call("ConfigMap", api.core.read_namespaced_config_map, name, namespace))
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise _error(f"configmap {namespace}/{name}", exc) from None


async def put_configmap(api: Api, namespace: str, name: str, data: dict[str, str], *, labels: dict[str, str],
                        annotations: dict[str, str], resource_version: str | None) -> str:
    """Create (``resource_version`` None) or replace the ConfigMap at exactly the version read:
    a stale one is refused by the API server and raised as ``Conflict``. Returns the new version."""
    body = k8s.V1ConfigMap(metadata=k8s.V1ObjectMeta(name=name, namespace=namespace, labels=labels,
                                                     annotations=annotations, resource_version=resource_version),
                           data=data)
    try:
        if resource_version is None:
            obj = await api.call("ConfigMap", api.core.create_namespaced_config_map, namespace, body)
        else:
            obj = await api.call("ConfigMap", api.core.replace_namespaced_config_map, name, namespace, body)
    except ApiException as exc:
        if exc.status == 409:
            raise Conflict(f"configmap {namespace}/{name} was changed by another writer "
                           f"(read at resourceVersion {resource_version or 'none'})") from None
        raise _error(f"configmap {namespace}/{name}", exc) from None
    return str(obj.metadata.resource_version)


async def list_configmaps(api: Api, namespace: str, selector: str) -> list[ConfigMapData]:
    try:
        out = await api.call("ConfigMaps", api.core.list_namespaced_config_map, namespace, label_selector=selector)
    except ApiException as exc:
        raise _error(f"configmaps in {namespace}", exc) from None
    return [_configmap(o) for o in out.items]


async def delete_configmap(api: Api, namespace: str, name: str) -> None:
    """Delete; already gone is fine."""
    try:
        await api.call("ConfigMap", api.core.delete_namespaced_config_map, name, namespace)
    except ApiException as exc:
        if exc.status != 404:
            raise _error(f"configmap {namespace}/{name}", exc) from None
