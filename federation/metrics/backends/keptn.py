"""Keptn: a KeptnMetric's current value, read from the zone's Kubernetes API, as Flagger's Keptn
provider reads it.

The query is ``keptnmetric/<namespace>/<name>`` (``keptnmetrics`` too; lower-cased and trimmed, as
Flagger does); the value is the object's ``.status.value`` (``metrics.keptn.sh/v1beta1``, a
string), parsed as a float. Flagger reads its own cluster; here each Kubernetes zone's (its
``kubeconfig``), through the reader the hub or ``fedctl metrics`` passes in (the Kubernetes client
belongs to ``runtimes.kubernetes``). A zone without a Kubernetes API, a missing object, a missing
or unparsable value, NaN or an API error is no data. Flagger's ``analysis/...`` form (creating a
Keptn Analysis and waiting for Keptn's controller) is not supported here: no data, saying so.
"""

from __future__ import annotations

import math
import re
from typing import Any, Protocol

from federation.core.spec import Zone
from federation.metrics.prometheus import NoData, Unreachable

API_VERSION = "metrics.keptn.sh/v1beta1"
_NAME = re.compile(r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$")


class KubeObjects(Protocol):
    """Reads one object from a zone's Kubernetes API (None when it does not exist)."""

    async def get(self, zone: Zone, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None: ...


def escape(value: str) -> str:
    """A value inside the query's path: a Kubernetes name or namespace only."""
    if not _NAME.match(value.lower()):
        raise ValueError(f"value {value!r} cannot be put in a Keptn query safely (a Kubernetes name: "
                         "letters, digits, '-' and '.')")
    return value


def parse(query: str) -> tuple[str, str]:
    """(namespace, name) of a ``keptnmetric/<namespace>/<name>`` query."""
    parts = query.strip().lower().split("/")
    if len(parts) < 3:
        raise NoData("keptn: the query must be keptnmetric/<namespace>/<name>")
    if parts[0] in ("analysis", "analyses"):
        raise NoData("keptn: analysis queries (a Keptn Analysis run by Keptn's controller) are not supported here; "
                     "use keptnmetric/<namespace>/<name>")
    if parts[0] not in ("keptnmetric", "keptnmetrics"):
        raise NoData(f"keptn: unknown resource {parts[0]!r} (keptnmetric/<namespace>/<name>)")
    ns, name = parts[1], parts[2]
    if not _NAME.match(ns) or not _NAME.match(name):
        raise NoData("keptn: the namespace and name must be Kubernetes names")
    return ns, name


class Keptn:
    escape = staticmethod(escape)

    def __init__(self, zone: Zone, kube: KubeObjects | None) -> None:
        self.zone, self.kube = zone, kube

    async def scalar(self, query: str, at: float) -> float:
        ns, name = parse(query)
        if self.zone.kubeconfig is None or self.kube is None:
            raise NoData(f"keptn: zone {self.zone.name} has no Kubernetes API to read KeptnMetric {ns}/{name} from")
        try:
            obj = await self.kube.get(self.zone, API_VERSION, "KeptnMetric", ns, name)
        except NoData:
            raise
        except Exception as exc:  # the reader's errors (access denied, API down): one line
            raise Unreachable(f"keptn: KeptnMetric {ns}/{name}: {exc}") from None
        if obj is None:
            raise NoData(f"keptn: KeptnMetric {ns}/{name} not found")
        value = (obj.get("status") or {}).get("value")
        if not isinstance(value, str) or not value.strip():
            raise NoData(f"keptn: KeptnMetric {ns}/{name} has no status.value yet")
        try:
            v = float(value)
        except ValueError:
            raise NoData(f"keptn: KeptnMetric {ns}/{name} status.value {value[:40]!r} is not a number") from None
        if math.isnan(v):
            raise NoData("NaN result")
        return v
