"""``fedctl validate`` on malformed specs: one line per problem, FILE: field: message, exit 2.

In-process (``tests.cli.fedctl``); the installed console script is checked by the tests at the end.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.cli import fedctl, installed

ROOT = Path(__file__).resolve().parents[2]
INVALID = sorted((ROOT / "tests" / "data" / "invalid").glob("*.yaml"))


def expected(path: Path) -> str:
    first = path.read_text().splitlines()[0]
    assert first.startswith("# expect: ")
    return first[len("# expect: "):]


def test_there_are_enough_malformed_specs():
    assert len(INVALID) >= 30


@pytest.mark.parametrize("path", INVALID, ids=[p.stem for p in INVALID])
def test_malformed_spec_gives_one_clear_line(path: Path):
    rel = str(path.relative_to(ROOT))
    r = fedctl("validate", rel)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "Traceback" not in r.stderr and r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"{rel}: "), lines[0]
    assert expected(path) in lines[0], lines[0]


def test_several_files_report_every_problem_and_nothing_for_good_files():
    bad = [str(p.relative_to(ROOT)) for p in INVALID[:3]]
    r = fedctl("validate", "clusters/canaries/frontend.yaml", *bad)
    assert r.returncode == 2
    assert [line.split(":")[0] for line in r.stderr.strip().splitlines()] == bad


def test_valid_examples_pass():
    r = fedctl("validate", "clusters/fleet.yaml", "clusters/canaries/frontend.yaml", "--fleet", "clusters/fleet.yaml")
    assert r.returncode == 0, r.stderr
    assert "2 file(s) valid" in r.stdout


def test_unreadable_and_missing_files():
    r = fedctl("validate", "does/not/exist.yaml", "tests")
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == ["does/not/exist.yaml: no such file",
                                             "tests: is a directory, not a spec file"]


def test_canary_zone_missing_from_fleet(tmp_path: Path):
    c = (ROOT / "clusters/canaries/frontend.yaml").read_text().replace("zones: [vms]", "zones: [vms, gke]")
    f = tmp_path / "c.yaml"
    f.write_text(c)
    r = fedctl("validate", str(f), "--fleet", "clusters/fleet.yaml")
    assert r.returncode == 2
    assert r.stderr.strip() == (f"{f}: spec.primary.zones[1]: zone 'gke' is not in fleet 'example' "
                                "(has: eks, onprem, vms)")


def test_plan_json_is_machine_readable():
    import json

    r = fedctl("plan", "clusters/canaries/frontend.yaml", "--fleet", "clusters/fleet.yaml", "-o", "json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert [s["canaryWeight"] for s in data["steps"]] == [0, 1000, 2000, 3000, 4000, 5000, 7500, 10000]
    for s in data["steps"]:
        assert sum(s["weights"].values()) == 10000
    assert data["steps"][1]["weights"] == {"eks/v2": 667, "onprem/v2": 333, "vms/v1": 9000}


def test_plan_table_names_every_subset():
    r = fedctl("plan", "clusters/canaries/frontend.yaml", "--fleet", "clusters/fleet.yaml")
    assert r.returncode == 0, r.stderr
    for col in ("eks/v2", "onprem/v2", "vms/v1", "6.67%", "promotion"):
        assert col in r.stdout


@pytest.mark.parametrize(("args", "message"), [
    (["--state-store", "bogus"], "--state-store: 'bogus' is not one of: file, configmap"),
    (["--state-store", "configmap"], "--state-store: configmap needs --state-namespace"),
])
def test_hub_run_refuses_bad_options_before_starting(tmp_path: Path, args: list[str], message: str):
    """Through the installed console script: the entry point maps a bad option to exit 2."""
    env_token = {"FEDERATION_TOKEN": "t" * 32}
    r = subprocess.run([installed(), "hub", "run", "--fleet", "clusters/fleet.yaml", "--state-dir", str(tmp_path / "s"),
                        *args], capture_output=True, text=True, cwd=ROOT, env={**os.environ, **env_token}, timeout=60)
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not (tmp_path / "s").exists()  # nothing half-started


def test_the_installed_entry_point_validates_and_refuses():
    good = subprocess.run([installed(), "validate", "clusters/fleet.yaml"], capture_output=True, text=True, cwd=ROOT,
                          timeout=60)
    assert good.returncode == 0, good.stderr
    bad = subprocess.run([installed(), "validate", "tests/data/invalid/fleet-reserved-zone-name.yaml"],
                         capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.startswith("tests/data/invalid/fleet-reserved-zone-name.yaml: spec.zones[1].name: ")


def test_version_is_the_installed_package_version():
    """``fedctl --version`` prints the distribution's version (pyproject.toml), as installed."""
    import tomllib
    from importlib import metadata

    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert metadata.version("federation") == declared
    r = subprocess.run([installed(), "--version"], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 0 and r.stdout == f"fedctl {declared}\n" and r.stderr == "", r.stdout + r.stderr
    assert fedctl("--version").stdout == f"fedctl {declared}\n"


@pytest.mark.parametrize("zone", ["vms", "eks"])
def test_a_zone_release_with_an_unknown_version_field_is_one_line(zone: str, tmp_path: Path):
    """ZoneReleases of a VM zone and of a Kubernetes zone: a typo in a version's fields (``replica``)
    would silently run the default; validate names the file and the field, exit 2."""
    good = (ROOT / "clusters" / zone / "frontend.yaml").read_text()
    assert fedctl("validate", f"clusters/{zone}/frontend.yaml").returncode == 0
    bad = tmp_path / "frontend.yaml"
    bad.write_text(good.replace("    v1:\n", "    v1:\n      replica: 3\n", 1))
    r = fedctl("validate", str(bad))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines() == [f"{bad}: spec.versions.v1.replica: unknown field (did you mean 'replicas'?)"]
