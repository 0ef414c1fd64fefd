"""The step edit of a Kubernetes zone repo (``runtimes.workloads.edit``) on real Git repos: what
the team owns stays as written, the hub's folder holds exactly what is served, a zone emptied by a
step keeps an empty kustomization, and a ZoneRelease inside the path Flux applies is refused."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from federation.core import spec as specs
from federation.core.errors import PermanentError
from federation.core.state import Stage
from federation.core.steps import RolloutTarget, StepRecord
from federation.core.weights import Subset
from federation.demo import fluxlocal
from federation.gitops import repo as gitrepo
from federation.runtimes import workloads
from tests.integration import flux

ROOT = Path(__file__).resolve().parents[2]
TARGET = workloads.Target("eks", "frontend", "shop", 8080, specs.ZoneRouteKind.NONE)


def record(step: int, weights: dict[str, int], retire: tuple[str, ...] = ()) -> StepRecord:
    return StepRecord("shop/frontend", step, Stage.ANALYSIS, 0, tuple(sorted((Subset("eks", v), w)
                                                                              for v, w in weights.items())),
                      RolloutTarget("v1", ("eks",), "v2", ("vms",)), retire=tuple(Subset("eks", v) for v in retire))


def seed(tmp_path: Path, files: dict[str, str]) -> tuple[Path, gitrepo.Repo]:
    src = tmp_path / "seed"
    for name, text in files.items():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_text(text)
    bare = tmp_path / "zone.git"
    gitrepo.init_bare_seeded(bare, src)
    clone = gitrepo.Repo(str(bare), "main", tmp_path / "clone")
    clone.ensure()
    return bare, clone


def built(clone: gitrepo.Repo) -> list[dict]:
    clone.ensure()
    return fluxlocal.build(clone, "deploy")


def step(clone: gitrepo.Repo, rec: StepRecord, path: str = "deploy") -> str | None:
    return clone.commit_and_push(workloads.edit(TARGET, ".", path, rec), rec.message("frontend", "v2"),
                                 idempotency=(rec.rollout, rec.step))


def test_the_team_s_files_stay_and_the_hub_s_folder_holds_what_is_served(tmp_path: Path):
    zrel = (ROOT / "clusters" / "eks" / "frontend.yaml").read_text()
    top = ("# ours: platform team\napiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
           "resources:\n  - quota.yaml  # keep\n")
    quota = "apiVersion: v1\nkind: ResourceQuota\nmetadata: {name: q, namespace: shop}\nspec: {hard: {pods: '10'}}\n"
    bare, clone = seed(tmp_path, {"frontend.yaml": zrel, "deploy/kustomization.yaml": top, "deploy/quota.yaml": quota,
                                  "deploy/frontend/stray.yaml": "kind: ConfigMap\n"})
    assert step(clone, record(1, {"v1": 10000, "v2": 0}))
    tree = set(flux.git(bare, "ls-tree", "-r", "--name-only", "main").split())
    assert {p for p in tree if p.startswith("deploy/frontend/")} == {
        "deploy/frontend/kustomization.yaml", "deploy/frontend/frontend.yaml", "deploy/frontend/frontend-v1.yaml",
        "deploy/frontend/frontend-v2.yaml"}
    assert flux.git(bare, "show", "main:deploy/quota.yaml") == quota
    new_top = flux.git(bare, "show", "main:deploy/kustomization.yaml")
    assert new_top.startswith("# ours: platform team\n") and "- quota.yaml  # keep\n" in new_top
    assert yaml.safe_load(new_top)["resources"] == ["quota.yaml", "frontend"]
    docs = built(clone)
    assert [(d["kind"], d["metadata"]["name"]) for d in docs] == [
        ("ResourceQuota", "q"), ("Deployment", "frontend-v1"), ("Service", "frontend-v1"),
        ("Deployment", "frontend-v2"), ("Service", "frontend-v2"), ("Service", "frontend")]
    # The same step again is found, not redone; a step with the same serving changes no workload.
    assert step(clone, record(1, {"v1": 10000, "v2": 0})) == flux.head(bare)
    # Every version retired (this zone leaves the rollout): an empty kustomization, nothing applied.
    assert step(clone, record(2, {"v1": 0, "v2": 0}, retire=("v1", "v2")))
    assert built(clone) == [yaml.safe_load(quota)]
    kust = yaml.safe_load(flux.git(bare, "show", "main:deploy/frontend/kustomization.yaml"))
    assert kust["resources"] == []


def test_a_missing_top_kustomization_is_created(tmp_path: Path):
    bare, clone = seed(tmp_path, {"frontend.yaml": (ROOT / "clusters" / "eks" / "frontend.yaml").read_text()})
    assert step(clone, record(1, {"v1": 10000}))
    assert yaml.safe_load(flux.git(bare, "show", "main:deploy/kustomization.yaml"))["resources"] == ["frontend"]


def test_a_zone_release_inside_the_flux_path_is_refused(tmp_path: Path):
    _, clone = seed(tmp_path, {"deploy/frontend.yaml": (ROOT / "clusters" / "eks" / "frontend.yaml").read_text()})
    with pytest.raises(PermanentError, match=r"^zone eks: deploy/frontend.yaml is inside deploy, the path Flux "
                                             r"applies: a ZoneRelease is not a Kubernetes kind; move it out$"):
        step(clone, record(1, {"v1": 10000}))


def test_a_version_s_deployment_is_rendered_from_the_team_s_template(tmp_path: Path):
    """clusters/eks's v3 names workloads/frontend-v3.yaml: the step writes deploy/frontend/frontend-v3.yaml
    from it (what Flux applies); a human commit bumping the image there is rendered at the next step."""
    bare = flux.seed_zone_repo(tmp_path)
    clone = gitrepo.Repo(str(bare), "main", tmp_path / "clone")
    clone.ensure()
    assert step(clone, record(1, {"v2": 10000, "v3": 0}))
    v3 = next(yaml.safe_load_all(flux.git(bare, "show", "main:deploy/frontend/frontend-v3.yaml")))
    assert v3["kind"] == "Deployment" and v3["metadata"]["name"] == "frontend-v3"
    assert v3["metadata"]["labels"]["team"] == "shop"
    assert v3["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.example.com/shop/frontend:3.0.0"
    assert ("Deployment", "frontend-v3") in [(d["kind"], d["metadata"]["name"]) for d in built(clone)]
    human = gitrepo.Repo(str(bare), "main", tmp_path / "human")
    human.ensure()

    def bump(repo: gitrepo.Repo) -> list[str]:
        p = repo.workdir / "workloads" / "frontend-v3.yaml"
        p.write_text(p.read_text().replace("frontend:3.0.0", "frontend:3.0.1"))
        return ["workloads/frontend-v3.yaml"]

    assert human.commit_and_push(bump, "v3: image 3.0.1", author="Dev <dev@localhost>")
    assert step(clone, record(2, {"v2": 10000, "v3": 0}))
    v3 = next(yaml.safe_load_all(flux.git(bare, "show", "main:deploy/frontend/frontend-v3.yaml")))
    assert v3["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.example.com/shop/frontend:3.0.1"


@pytest.mark.parametrize(("ref", "files", "line"), [
    ("missing.yaml", {}, r"^zone eks: frontend.yaml: spec.versions.v3.template: missing.yaml not found$"),
    ("../x.yaml", {}, r"^zone eks: frontend.yaml: spec.versions.v3.template: '../x.yaml' leaves the zone repo$"),
    ("deploy/v3.yaml", {"deploy/v3.yaml": None},
     r"^zone eks: frontend.yaml: spec.versions.v3.template: deploy/v3.yaml is inside deploy, the path Flux applies"),
    ("w.yaml", {"w.yaml": "apiVersion: v1\nkind: Service\nmetadata: {name: x}\n"},
     r"^zone eks: w.yaml: kind: expected an apps/v1 Deployment, got v1/Service$"),
    ("w.yaml", {"w.yaml": "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec:\n  template:\n"
                          "    spec:\n      containers: [{name: a}]\n"},
     r"^zone eks: w.yaml: spec.template.spec.containers\[0\].image: required$"),
])
def test_a_bad_template_is_one_line_naming_the_file_and_field(tmp_path: Path, ref: str, files: dict, line: str):
    template = (ROOT / "clusters" / "eks" / "workloads" / "frontend-v3.yaml").read_text()
    zrel = (ROOT / "clusters" / "eks" / "frontend.yaml").read_text().replace("workloads/frontend-v3.yaml", ref)
    _, clone = seed(tmp_path, {"frontend.yaml": zrel, **{k: v or template for k, v in files.items()}})
    with pytest.raises(PermanentError, match=line):
        step(clone, record(1, {"v2": 10000, "v3": 0}))


@pytest.mark.parametrize("zone", ["vms", "eks"])
def test_a_step_refuses_an_unknown_version_field_in_either_zone_kind(tmp_path: Path, zone: str):
    """The hub's step edit reads the served versions' definitions first, in a VM zone as in a
    Kubernetes zone: a typo (``replica``) is one line naming the zone, the file and the field."""
    from federation.gitops import releases

    zrel = (ROOT / "clusters" / zone / "frontend.yaml").read_text().replace("    v1:\n", "    v1:\n      replica: 3\n", 1)
    _, clone = seed(tmp_path, {"frontend.yaml": zrel})
    rec = StepRecord("shop/frontend", 1, Stage.ANALYSIS, 0, ((Subset(zone, "v1"), 10000),),
                     RolloutTarget("v1", (zone,), "v2", ("eks",)))
    edit = workloads.edit(TARGET, ".", "deploy", rec) if zone == "eks" else releases.edit_serving(zone, ".", "frontend",
                                                                                                  rec)
    with pytest.raises(PermanentError) as err:
        clone.commit_and_push(edit, "step 1", idempotency=(rec.rollout, rec.step))
    assert str(err.value) == f"zone {zone}: frontend.yaml: spec.versions.v1.replica: unknown field (did you mean 'replicas'?)"


def test_replicas_follow_the_weight_from_one_step_to_the_next(tmp_path: Path):
    """With the zone's ``flux.replicas: weight``, each step's commit sizes the Deployments from the
    weights before and after it (read from the ZoneRelease the step edits): v2 of 2 replicas."""
    _, clone = seed(tmp_path, {"frontend.yaml": (ROOT / "clusters" / "eks" / "frontend.yaml").read_text()})
    t = workloads.Target("eks", "frontend", "shop", 8080, follow_weight=True)

    def replicas(rec: StepRecord) -> dict[str, int]:
        assert clone.commit_and_push(workloads.edit(t, ".", "deploy", rec), rec.message("frontend", "v2"),
                                     idempotency=(rec.rollout, rec.step))
        docs = built(clone)
        return {d["metadata"]["name"]: d["spec"]["replicas"] for d in docs if d["kind"] == "Deployment"}

    assert replicas(record(1, {"v1": 10000, "v2": 0})) == {"frontend-v1": 2, "frontend-v2": 1}
    assert replicas(record(2, {"v1": 5000, "v2": 5000})) == {"frontend-v1": 2, "frontend-v2": 1}
    assert replicas(record(3, {"v1": 0, "v2": 10000})) == {"frontend-v1": 1, "frontend-v2": 2}
    assert replicas(record(4, {"v2": 10000}, retire=("v1",))) == {"frontend-v2": 2}
