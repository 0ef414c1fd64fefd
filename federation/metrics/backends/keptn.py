"""Keptn: a KeptnMetric's current value, read from the zone's Kubernetes API, as Flagger's Keptn
provider reads it.

The query is ``keptnmetric/<namespace>/<name>`` (``keptnmetrics`` too; lower-cased and trimmed, as
Flagger does); the value is the object's ``.status.value`` (``metrics.keptn.sh/v1beta1``, a
string), parsed as a float. Flagger reads its own cluster; here each Kubernetes zone's (its
``kubeconfig``), through the reader the hub or ``fedctl metrics`` passes in (the Kubernetes client
belongs to ``runtimes.kubernetes``). A zone without a Kubernetes API, a missing object, a missing
or unparsable value, NaN or an API error is no data.

``analysis/<namespace>/<definition>[/<timeframe>[/<key=value;...>]]`` runs a Keptn Analysis, as
Flagger does: an ``Analysis`` named ``<definition>-<6 random hex>`` is created in the namespace
(``spec.analysisDefinition.name``, ``spec.timeframe.recent`` — default ``1m`` — and ``spec.args``),
its status polled every second until Keptn's metrics-operator marks it ``Completed`` (the value is
1 when ``status.pass`` is true, else 0), for at most ``analysis_timeout`` (10 s, Flagger's), and
the object deleted afterwards whatever happened. No completion in time is no data, saying so.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import secrets
from dataclasses import dataclass, field
from typing import Any, Protocol

from federation.core.spec import Zone
from federation.metrics.prometheus import NoData, Unreachable

log = logging.getLogger("federation.metrics")
API_VERSION = "metrics.keptn.sh/v1beta1"
_NAME = re.compile(r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$")


_DURATION = re.compile(r"^[0-9]{1,6}(ms|s|m|h)$")
_ARG = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")


class KubeObjects(Protocol):
    """Reads one object from a zone's Kubernetes API (None when it does not exist), creates and
    deletes namespaced objects (a Keptn Analysis)."""

    async def get(self, zone: Zone, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None: ...

    async def create(self, zone: Zone, manifest: dict[str, Any]) -> None: ...

    async def delete(self, zone: Zone, api_version: str, kind: str, namespace: str, name: str) -> None: ...


@dataclass(frozen=True)
class Query:
    kind: str  # "KeptnMetric" or "Analysis"
    namespace: str
    name: str
    timeframe: str = "1m"
    args: dict[str, str] = field(default_factory=dict)


def escape(value: str) -> str:
    """A value inside the query's path: a Kubernetes name or namespace only."""
    if not _NAME.match(value.lower()):
        raise ValueError(f"value {value!r} cannot be put in a Keptn query safely (a Kubernetes name: "
                         "letters, digits, '-' and '.')")
    return value


def parse(query: str) -> Query:
    """The resource a query names (lower-cased and trimmed, as Flagger does)."""
    parts = query.strip().lower().split("/")
    if len(parts) < 3:
        raise NoData("keptn: the query must be keptnmetric/<namespace>/<name> or "
                     "analysis/<namespace>/<definition>[/<timeframe>[/<key=value;...>]]")
    ns, name = parts[1], parts[2]
    if not _NAME.match(ns) or not _NAME.match(name):
        raise NoData("keptn: the namespace and name must be Kubernetes names")
    if parts[0] in ("keptnmetric", "keptnmetrics"):
        return Query("KeptnMetric", ns, name)
    if parts[0] not in ("analysis", "analyses"):
        raise NoData(f"keptn: unknown resource {parts[0]!r} (keptnmetric/... or analysis/...)")
    timeframe = parts[3] if len(parts) > 3 and parts[3] else "1m"
    if not _DURATION.match(timeframe):
        raise NoData(f"keptn: analysis timeframe {timeframe[:20]!r} is not a duration such as 5m")
    args: dict[str, str] = {}
    for pair in (parts[4].split(";") if len(parts) > 4 and parts[4] else []):
        key, eq, value = pair.partition("=")
        if not eq:
            continue  # as Flagger: a piece without '=' is ignored
        if not _ARG.match(key) or not _ARG.match(value):
            raise NoData(f"keptn: analysis argument {pair[:40]!r} must be key=value of letters, digits, '.', '_', '-'")
        args[key] = value
    return Query("Analysis", ns, name, timeframe, args)


class Keptn:
    escape = staticmethod(escape)

    def __init__(self, zone: Zone, kube: KubeObjects | None, analysis_timeout: float = 10.0,
                 poll: float = 1.0) -> None:
        self.zone, self.kube = zone, kube
        self.analysis_timeout, self.poll = analysis_timeout, poll

    async def scalar(self, query: str, at: float) -> float:
        q = parse(query)
        if self.zone.kubeconfig is None or self.kube is None:
            raise NoData(f"keptn: zone {self.zone.name} has no Kubernetes API to read {q.kind} {q.namespace}/{q.name} from")
        if q.kind == "Analysis":
            return await self._analysis(self.kube, q)
        try:
            obj = await self.kube.get(self.zone, API_VERSION, "KeptnMetric", q.namespace, q.name)
        except NoData:
            raise
        except Exception as exc:  # the reader's errors (access denied, API down): one line
            raise Unreachable(f"keptn: KeptnMetric {q.namespace}/{q.name}: {exc}") from None
        where = f"KeptnMetric {q.namespace}/{q.name}"
        if obj is None:
            raise NoData(f"keptn: {where} not found")
        value = (obj.get("status") or {}).get("value")
        if not isinstance(value, str) or not value.strip():
            raise NoData(f"keptn: {where} has no status.value yet")
        try:
            v = float(value)
        except ValueError:
            raise NoData(f"keptn: {where} status.value {value[:40]!r} is not a number") from None
        if math.isnan(v):
            raise NoData("NaN result")
        return v

    async def _analysis(self, kube: KubeObjects, q: Query) -> float:
        name = f"{q.name}-{secrets.token_hex(3)}"
        where = f"Keptn Analysis {q.namespace}/{name}"
        manifest = {"apiVersion": API_VERSION, "kind": "Analysis", "metadata": {"name": name, "namespace": q.namespace},
                    "spec": {"analysisDefinition": {"name": q.name}, "timeframe": {"recent": q.timeframe},
                             "args": q.args}}
        try:
            await kube.create(self.zone, manifest)
        except Exception as exc:
            raise Unreachable(f"keptn: cannot create {where}: {exc}") from None
        try:
            deadline = asyncio.get_running_loop().time() + self.analysis_timeout
            while True:
                await asyncio.sleep(self.poll)
                try:
                    obj = await kube.get(self.zone, API_VERSION, "Analysis", q.namespace, name)
                except Exception as exc:
                    raise Unreachable(f"keptn: {where}: {exc}") from None
                status = (obj or {}).get("status") or {}
                if status.get("state") == "Completed" and isinstance(status.get("pass"), bool):
                    return 1.0 if status["pass"] else 0.0
                if asyncio.get_running_loop().time() >= deadline:
                    raise NoData(f"keptn: {where} not completed within {self.analysis_timeout:g}s "
                                 "(is Keptn's metrics-operator running in the zone?)")
        finally:
            try:
                await kube.delete(self.zone, API_VERSION, "Analysis", q.namespace, name)
            except Exception as exc:  # the figure stands; the object is left for a person to remove
                log.warning("keptn: could not delete %s: %s", where, exc)
