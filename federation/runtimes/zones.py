"""Each zone's runtime, chosen once from its kind: ``VmZone`` or ``KubeZone`` (``ports.ZoneRuntime``).

Callers: ``hub`` (built once per fleet; no kind checks after this).
"""

from __future__ import annotations

from federation.core import spec as specs
from federation.gitops.aio import AsyncRepo
from federation.runtimes.flux import KubeZone
from federation.runtimes.ports import ZoneRuntime
from federation.runtimes.ssh import Pool
from federation.runtimes.vm import VmZone


def build(zone: specs.Zone, repo: AsyncRepo, pool: Pool,
          provider: specs.MeshProvider = specs.MeshProvider.KUMA) -> ZoneRuntime:
    """``provider`` (the fleet's mesh) says how a Kubernetes zone splits between local versions."""
    if zone.kind is specs.ZoneKind.KUBERNETES:
        return KubeZone.of(zone, repo, provider)
    return VmZone(zone, repo, pool)
