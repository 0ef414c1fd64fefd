"""The mesh repo: FederatedCanary specs under ``canaries/``, MetricTemplates under ``templates/``,
and the rendered route of each service under ``routes/`` (the hub's record of every step).

Callers: ``hub.service`` (discovery), ``hub.executor`` (a step's route commit), the demo.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
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
                   queries: Mapping[str, str] | None = None, running: Iterable[str] = ()) -> Found:
    """FederatedCanary specs in the mesh repo: key -> (path, spec or None, problem); a file that
    cannot be read at all is keyed by its path. Each valid one carries the checksum of its canary
    version's definitions in the canary zones' repos; ``queries`` (MetricTemplate name -> query)
    checks each templateRef's variables.

    One bad file affects only itself: whatever it raises becomes its problem. Two canaries for one
    service (its route file, its ZoneReleases and its agents' state are per service) are refused:
    the one in ``running`` (else the first by path) keeps it, the other is a problem naming it."""
    under = mesh.under("canaries")

    def load(repo: Repo) -> list[tuple[str, list[specs.Model] | FederationError]]:
        out: list[tuple[str, list[specs.Model] | FederationError]] = []
        for path in repo.files(under):
            try:  # named by its path in the repo: no clone path of the hub's in problems
                out.append((path, specfiles.load_text(repo.read(path) or "", path)))
            except FederationError as exc:
                out.append((path, exc))
            except Exception as exc:  # one file never takes discovery down
                out.append((path, FederationError(f"{path}: unreadable: {type(exc).__name__}: {exc}"[:500])))
        return out

    out: Found = {}
    owner: dict[str, str] = {}  # service -> the key that has it
    running = set(running)
    loaded = await mesh.call(load)
    ordered = sorted(((path, d) for path, docs in loaded if not isinstance(docs, FederationError)
                      for d in docs if isinstance(d, specs.FederatedCanary)),
                     key=lambda pd: (pd[1].key not in running, pd[0]))
    for path, docs in loaded:
        if isinstance(docs, FederationError):
            out[path] = (path, None, str(docs))
    for path, d in ordered:
        service = d.spec.service.name
        if d.key in out:  # the first keeps it; the second is a problem of its own file
            out[path] = (path, None, f"{path}: metadata: rollout {d.key} is defined twice "
                                     f"({out[d.key][0]} and {path})")
            continue
        if service in owner:
            out[d.key] = (path, None, f"{path}: spec.service.name: service {service!r} already has a canary "
                                      f"({owner[service]} in {out[owner[service]][0]}); one canary per service")
            continue
        owner[service] = d.key
        problems = specs.check_against_fleet(d, fleet) + specs.check_templates(d, queries or {})
        problem = "; ".join(f"{path}: {f}: {m}" for f, m in problems)
        if not problems:
            try:
                d.spec.with_checksum(await canary_checksum(d.spec, zones))
            except FederationError as exc:
                problem = f"{path}: {exc}"
        out[d.key] = (path, None if problem else d, problem)
    return out


async def last_valid(mesh: AsyncRepo, fleet: specs.Fleet, zones: Mapping[str, AsyncRepo], path: str,
                     queries: Mapping[str, str] | None = None, depth: int = 50) -> specs.FederatedCanary | None:
    """The canary of the newest version of ``path`` in the mesh repo's last ``depth`` commits that
    defines one validly (checked against the fleet and templates of now). A hub that restarts
    while a running rollout's file is invalid picks its last valid spec up from Git here (a hub that
    kept running keeps the one it had), so the rollout is not detached mid-way."""
    def versions(repo: Repo) -> list[str]:
        return [text for c in repo.log(depth, path=path) if (text := repo.read_at(c.sha, path)) is not None]

    for text in await mesh.call(versions):
        try:
            docs = specfiles.load_text(text, path)
        except FederationError:
            continue
        for d in docs:
            if not isinstance(d, specs.FederatedCanary):
                continue
            if specs.check_against_fleet(d, fleet) or specs.check_templates(d, queries or {}):
                break
            try:
                d.spec.with_checksum(await canary_checksum(d.spec, zones))
            except FederationError:
                break
            return d
    return None


async def canary_checksum(spec: specs.CanarySpec, zones: Mapping[str, AsyncRepo]) -> str:
    """Digest of the canary version as each canary zone's repo defines it (image, artifact,
    command, env, replicas..., or the pod template of the Deployment template it names): a bump
    there is a new revision of the canary, which (re)starts its rollout. Zones without the definition count as such (the step then fails loudly)."""
    definitions: dict[str, Any] = {}
    for z in sorted(spec.canary.zones):
        repo = zones[z]

        def read(r: Repo, under: str = repo.path) -> Any:
            return releases.resolved_definition(r, under, spec.service.name, spec.canary.version)

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
        repo.write(path, specfiles.dump(docs))  # refuses a symlink at the path or on the way
        return [path]

    return await mesh.commit(edit, message, (record.rollout, record.step), record.identity())
