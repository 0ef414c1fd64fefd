"""The hub's container image (Dockerfile, ``make image`` = scripts/build-image): built here with
buildah on an mmdebstrap Debian base, then its ``fedctl hub run`` started with ``buildah run``
(chroot isolation, the host's loopback) against the demo fleet's real Git repos, as the image's
non-root user: /healthz answers 200 and /readyz reports the rollout it found in the mesh repo.

Marked ``image``: ``make test`` runs it only once the image for the current sources is built
(``scripts/build-image --cached``); run ``make image`` first, or select it with ``-m image`` (it
then builds the image, minutes on a cold machine). FEDERATION_IMAGE names another image to try
(in the same buildah storage). Skipped, with the reason, where buildah is
missing or cannot run containers."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from federation.demo import run as demo_run
from federation.demo.fleet import LocalFleet
from federation.demo.procs import Supervisor, wait_for
from tests.integration.conftest import free_port

pytestmark = pytest.mark.image
ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "scripts" / "build-image"
UID = 10001  # the image's user (Dockerfile)


def buildah() -> list[str]:
    if os.geteuid() != 0:
        pytest.skip("needs root: buildah's chroot isolation here, and handing the demo fleet to the image's uid 10001")
    if shutil.which("buildah") is None:
        pytest.skip("buildah is not installed (scripts/install-image-deps installs it; needs root)")
    opts = subprocess.run([str(BUILD), "--buildah"], capture_output=True, text=True, check=True).stdout.split()
    probe = subprocess.run(["buildah", *opts, "info"], capture_output=True, text=True, timeout=60)
    if probe.returncode != 0:
        pytest.skip(f"buildah cannot run here: {probe.stderr.strip().splitlines()[-1:]}")
    return ["buildah", *opts]


@pytest.fixture(scope="module")
def image() -> str:
    """The image for the current sources (built when missing), or FEDERATION_IMAGE as given."""
    ba = buildah()
    if os.environ.get("FEDERATION_IMAGE"):
        return os.environ["FEDERATION_IMAGE"]
    cached = subprocess.run([str(BUILD), "--cached"], capture_output=True, text=True)
    if cached.returncode == 0:
        return cached.stdout.strip()
    r = subprocess.run(["nice", "-n", "15", str(BUILD)], capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, f"scripts/build-image failed:\n{r.stderr[-3000:]}"
    ref = r.stdout.strip().splitlines()[-1]
    assert subprocess.run([*ba, "inspect", "--type", "image", ref], capture_output=True).returncode == 0
    return ref


@pytest.fixture
def container(image: str) -> Iterator[tuple[list[str], str]]:
    ba = buildah()
    ctr = subprocess.run([*ba, "from", "--pull=false", "--quiet", image], capture_output=True, text=True, timeout=600)
    if ctr.returncode != 0:
        pytest.skip(f"buildah cannot create a container here: {ctr.stderr.strip()[-300:]}")
    name = ctr.stdout.strip()
    try:
        yield ba, name
    finally:
        subprocess.run([*ba, "rm", name], capture_output=True, timeout=300)


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory the image's user (uid 10001) owns, bind-mounted at the same path: pytest's own
    tmp_path sits under a root-only directory."""
    d = Path(tempfile.mkdtemp(prefix="fed-image-"))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def chown_tree(root: Path, uid: int) -> None:
    os.chown(root, uid, uid)
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            os.chown(os.path.join(dirpath, n), uid, uid, follow_symlinks=False)


def image_config(ba: list[str], image: str) -> dict:
    out = subprocess.run([*ba, "inspect", "--type", "image", image], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)["OCIv1"]["config"]


def test_image_metadata(image: str):
    ba = buildah()
    cfg = image_config(ba, image)
    assert cfg["User"] == f"{UID}:{UID}" and cfg["Entrypoint"] == ["fedctl"]
    labels = cfg["Labels"]
    from importlib import metadata
    assert labels["org.opencontainers.image.version"] == metadata.version("federation")
    assert {"org.opencontainers.image.title", "org.opencontainers.image.revision", "org.opencontainers.image.source",
            "org.opencontainers.image.licenses", "org.opencontainers.image.created"} <= labels.keys()


def test_the_images_hub_serves_healthz_against_the_demo_fleet(container: tuple[list[str], str], shared_dir: Path):
    ba, ctr = container
    fleet = LocalFleet(shared_dir / "fleet")
    fleet.prepare()  # bare Git repos and the fleet file; no zone process runs (the hub waits on them)
    demo_run.release(fleet, demo_run.canary_doc(demo_run.Pace.fast(), ("v1", ["vms"]), ("v2", ["eks", "onprem"])),
                     "release v2")
    token = shared_dir / "token"
    token.write_text(secrets.token_hex(16) + "\n")
    chown_tree(shared_dir, UID)
    run = [*ba, "run", "--isolation", "chroot", "-v", f"{shared_dir}:{shared_dir}", ctr, "--"]

    version = subprocess.run([*run, "fedctl", "--version"], capture_output=True, text=True, timeout=120)
    from importlib import metadata
    assert version.returncode == 0 and version.stdout.strip() == f"fedctl {metadata.version('federation')}", \
        version.stdout + version.stderr
    # The image carries these sources (a stale build cache would serve an older layer).
    digest = ("import federation, hashlib, pathlib; root = pathlib.Path(federation.__file__).parent; "
              "print(hashlib.sha256(b''.join(p.relative_to(root).as_posix().encode() + p.read_bytes() "
              "for p in sorted(root.rglob('*.py')))).hexdigest())")
    inside = subprocess.run([*run, "python", "-c", digest], capture_output=True, text=True, timeout=120)
    here = subprocess.run([sys.executable, "-c", digest], capture_output=True, text=True, timeout=120)
    if not os.environ.get("FEDERATION_IMAGE"):
        assert inside.stdout and inside.stdout == here.stdout, "the image's federation package is not these sources"
    tools = subprocess.run([*run, "sh", "-c", "id -u; git --version; ssh -V 2>&1; gpg --version | head -1"],
                           capture_output=True, text=True, timeout=120)
    assert tools.returncode == 0, tools.stderr
    assert tools.stdout.splitlines()[0] == str(UID) and "git version" in tools.stdout and "OpenSSH" in tools.stdout

    port = free_port()
    procs = Supervisor(shared_dir / "logs")
    try:
        hub = procs.start("hub", [*run, "fedctl", "hub", "run", "--fleet", str(fleet.fleet_file), "--state-dir",
                                  str(shared_dir / "state"), "--listen", f"127.0.0.1:{port}",
                                  "--token-file", str(token)])

        def answers(path: str) -> httpx.Response | None:
            assert hub.alive(), f"the image's hub exited:\n{hub.tail(30)}"
            try:
                return httpx.get(f"http://127.0.0.1:{port}{path}", timeout=2.0)
            except httpx.HTTPError:
                return None

        wait_for(lambda: (r := answers("/healthz")) is not None and r.status_code == 200, 180, "the image's /healthz")
        # Ready once it cloned the mesh repo (git in the image, as uid 10001) and found the rollout.
        wait_for(lambda: (r := answers("/readyz")) is not None and r.status_code == 200, 180, "the image's /readyz")
        body = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5.0).json()
        assert body["rollouts"] == 1, body
        r = httpx.get(f"http://127.0.0.1:{port}/api/v1/rollouts", timeout=5.0,
                      headers={"Authorization": f"Bearer {token.read_text().strip()}"})
        assert r.status_code == 200 and r.json()["items"][0]["rollout"] == "shop/frontend", r.text
        assert (shared_dir / "state").stat().st_uid == UID  # the hub wrote its state as the image's user
    finally:
        procs.stop_all()
