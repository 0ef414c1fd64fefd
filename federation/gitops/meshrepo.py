"""The mesh repo: FederatedCanary specs under ``canaries/``, MetricTemplates under ``templates/``,
and the rendered route of each service under ``routes/`` (the hub's record of every step).

Callers: ``hub.service`` (discovery), ``hub.executor`` (a step's route commit), the demo.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from federation import specfiles
from federation.core import spec as specs
from federation.core.errors import FederationError
from federation.core.steps import StepRecord
from federation.gitops import releases
from federation.gitops.aio import AsyncRepo
from federation.gitops.repo import Repo

Found = dict[str, tuple[str, specs.FederatedCanary | None, str]]


async def canaries(mesh: AsyncRepo, fleet: specs.Fleet, zones: Mapping[str, AsyncRepo],
                   queries: Mapping[str, str] | None = None) -> Found:
    """FederatedCanary specs in the mesh repo: key -> (path, spec or None, problem). Each valid one
    carries the checksum of its canary version's definitions in the canary zones' repos.
    ``queries`` (MetricTemplate name -> query) checks each templateRef's variables."""
    under = mesh.under("canaries")

    def load(repo: Repo) -> list[tuple[str, list[specs.Model] | FederationError]]:
        out: list[tuple[str, list[specs.Model] | FederationError]] = []
        for path in repo.files(under):
            try:
                out.append((path, specfiles.load(repo.workdir / path)))
            except FederationError as exc:
                out.append((path, exc))
        return out

    out: Found = {}
    for path, loaded in await mesh.call(load):
        if isinstance(loaded, FederationError):
            out[path] = (path, None, str(loaded))
            continue
        for d in loaded:
            if not isinstance(d, specs.FederatedCanary):
                continue
            problems = specs.check_against_fleet(d, fleet) + specs.check_templates(d, queries or {})
            problem = "; ".join(f"{path}: {f}: {m}" for f, m in problems)
            if not problems:
                try:
                    d.spec.with_checksum(await canary_checksum(d.spec, zones))
                except FederationError as exc:
                    problem = str(exc)
            out[d.key] = (path, None if problem else d, problem)
    return out


async def canary_checksum(spec: specs.CanarySpec, zones: Mapping[str, AsyncRepo]) -> str:
    """Digest of the canary version as each canary zone's repo defines it (image, artifact,
    command, env, replicas...): a bump there is a new revision of the canary, which (re)starts
    its rollout. Zones without the definition count as such (the step then fails loudly)."""
    definitions: dict[str, Any] = {}
    for z in sorted(spec.canary.zones):
        repo = zones[z]

        def read(r: Repo, under: str = repo.path) -> Any:
            return releases.definition(r, under, spec.service.name, spec.canary.version)

        definitions[z] = await repo.call(read)
    return releases.checksum(definitions)


async def metric_templates(mesh: AsyncRepo) -> dict[str, specs.MetricTemplate | str]:
    """Flagger MetricTemplate documents under the mesh repo's templates/, by name (an invalid one
    maps to its problem line)."""
    return specfiles.metric_templates(await mesh.read_all(mesh.under("templates")))


async def commit_route(mesh: AsyncRepo, service: str, docs: list[dict[str, Any]], record: StepRecord,
                       message: str) -> str | None:
    """A step's rendered route as ``routes/<service>.yaml`` (found, not redone, after a crash)."""
    path = mesh.under("routes", f"{service}.yaml")

    def edit(repo: Repo) -> list[str]:
        target = repo.workdir / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(specfiles.dump(docs), encoding="utf-8")
        return [path]

    return await mesh.commit(edit, message, (record.rollout, record.step), record.identity())
