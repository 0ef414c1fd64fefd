"""What the agent accepts from the hub: the request line and the desired state, checked before
anything is stored or run. Standard library only (Python 3.9+).

The hub is trusted to talk to the agent, but what it sends comes from a zone repo anyone with push
access writes. So: request lines are bounded; names and versions are plain tokens (they become file
names, unit names and unit text); commands must resolve to a file under a directory the agent's
own configuration allows (on the VM, never from Git); environment names follow a plain pattern and
loader variables (``LD_PRELOAD`` and friends) are refused; no value carries a control character
(a newline would add lines to a systemd unit). See docs/limits.md.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
from collections.abc import Iterable
from typing import Any

MAX_LINE = 1024 * 1024  # bytes of one request line
MAX_MANIFESTS = 100
MAX_VERSIONS = 50
MAX_REPLICAS = 64
MAX_ARGS = 64
MAX_ARG = 4096
MAX_ENV = 128
MAX_VALUE = 4096
MAX_REVISION = 128

TOKEN = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
REVISION = re.compile(r"[A-Za-z0-9._/@:+-]{1,128}")
# Variables that change what the dynamic loader, an interpreter or a shell runs before the app.
DANGEROUS_ENV = re.compile(r"(LD_|DYLD_|GCONV_PATH$|GLIBC_TUNABLES$|MALLOC_|PYTHON(PATH|HOME|STARTUP|INSPECT)$|"
                           r"PERL5(LIB|OPT)$|PERLLIB$|RUBYOPT$|RUBYLIB$|NODE_OPTIONS$|NODE_PATH$|BASH_ENV$|ENV$|"
                           r"IFS$|JAVA_TOOL_OPTIONS$|_JAVA_OPTIONS$|PATH$|HOME$|SHELL$|FED_)")
CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class Refused(ValueError):
    """A request or desired state the agent will not take; ``str()`` is the one-line reason."""


def _text(value: Any, what: str, limit: int = MAX_VALUE) -> str:
    if not isinstance(value, str):
        raise Refused(f"{what} must be a string")
    if len(value) > limit:
        raise Refused(f"{what} is longer than {limit} characters")
    if CONTROL.search(value):
        raise Refused(f"{what} contains a control character (newline, NUL, ...)")
    return value


def _token(value: Any, what: str) -> str:
    if not isinstance(value, str) or not TOKEN.fullmatch(value):
        raise Refused(f"{what} {str(value)[:80]!r} is not a name (letters, digits, '.', '_', '-'; at most 63)")
    return value


def check_desired(desired: Any) -> None:
    """The shape and every value of a desired state; ``Refused`` naming the first problem."""
    if not isinstance(desired, dict):
        raise Refused("apply takes desired (an object)")
    revision = desired.get("revision")
    if not isinstance(revision, str) or not REVISION.fullmatch(revision):
        raise Refused("apply needs revision (a Git revision: at most 128 characters, no spaces)")
    step = desired.get("step")
    if isinstance(step, bool) or not isinstance(step, int) or not 0 <= step <= 10 ** 9:
        raise Refused("apply needs step (a whole number, 0 or more): without it the older-state guard cannot work")
    generation = desired.get("generation")
    if generation is not None and (isinstance(generation, bool) or not isinstance(generation, int)
                                   or not 0 <= generation <= 10 ** 12):
        raise Refused("generation must be a whole number, 0 or more (the zone repo's commit count)")
    manifests = desired.get("manifests")
    if not isinstance(manifests, list) or len(manifests) > MAX_MANIFESTS:
        raise Refused(f"apply needs manifests (a list of at most {MAX_MANIFESTS})")
    services = set()
    for i, m in enumerate(manifests):
        if not isinstance(m, dict) or m.get("kind") != "ZoneRelease":
            continue
        spec = m.get("spec")
        if not isinstance(spec, dict):
            raise Refused(f"manifests[{i}].spec must be an object")
        service = _token(spec.get("service"), f"manifests[{i}].spec.service")
        if service in services:
            raise Refused(f"service {service} has two ZoneReleases")
        services.add(service)
        versions = spec.get("versions") or {}
        serving = spec.get("serving") or {}
        if not isinstance(versions, dict) or len(versions) > MAX_VERSIONS:
            raise Refused(f"{service}: versions must be a mapping of at most {MAX_VERSIONS}")
        if not isinstance(serving, dict):
            raise Refused(f"{service}: serving must be a mapping")
        for version, weight in serving.items():
            _token(version, f"{service}: serving version")
            if isinstance(weight, bool) or not isinstance(weight, int) or not 0 <= weight <= 10000:
                raise Refused(f"{service}/{version}: weight must be a whole number of basis points (0-10000)")
        for version, vspec in versions.items():
            check_version(service, _token(version, f"{service}: version"), vspec)


def check_version(service: str, version: str, vspec: Any) -> None:
    where = f"{service}/{version}"
    if not isinstance(vspec, dict):
        raise Refused(f"{where}: must be an object")
    command = vspec.get("command")
    if not isinstance(command, list) or not command or len(command) > MAX_ARGS:
        raise Refused(f"{where}: command must be a list of 1 to {MAX_ARGS} strings")
    for j, arg in enumerate(command):
        _text(arg, f"{where}: command[{j}]", MAX_ARG)
    replicas = vspec.get("replicas", 1)
    if isinstance(replicas, bool) or not isinstance(replicas, int) or not 0 <= replicas <= MAX_REPLICAS:
        raise Refused(f"{where}: replicas must be a whole number from 0 to {MAX_REPLICAS}")
    health = _text(vspec.get("health", "/healthz"), f"{where}: health", 1024)
    if not health.startswith("/"):
        raise Refused(f"{where}: health must be a path starting with /")
    env = vspec.get("env") or {}
    if not isinstance(env, dict) or len(env) > MAX_ENV:
        raise Refused(f"{where}: env must be a mapping of at most {MAX_ENV}")
    for name, value in env.items():
        if not isinstance(name, str) or not ENV_NAME.fullmatch(name):
            raise Refused(f"{where}: env name {str(name)[:80]!r} is not a plain variable name")
        if DANGEROUS_ENV.match(name):
            raise Refused(f"{where}: env {name} is refused (it changes what runs before the app)")
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise Refused(f"{where}: env {name} must be a string or a number")
        _text(str(value), f"{where}: env {name}")


def resolve_command(argv0: str, allowed: Iterable[str] | None) -> str:
    """The real path of a command, which must lie under one of ``allowed`` (None: anywhere)."""
    found = argv0 if os.path.isabs(argv0) else shutil.which(argv0)
    if found is None:
        raise Refused(f"{argv0!r} is not on the agent's PATH")
    if not os.path.exists(found):  # a missing binary says so, as starting it would
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), found)
    if allowed is None:
        return found
    real = os.path.realpath(found)
    for d in allowed:
        root = os.path.realpath(d)
        if real.startswith(root.rstrip("/") + "/"):
            return found
    raise Refused(f"{argv0!r} ({real}) is not under an allowed command directory "
                  f"({', '.join(allowed) or 'none configured'}; fed-agent --allow-commands)")
