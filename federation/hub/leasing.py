"""Which rollouts this replica runs, from its per-rollout Leases (``runtimes.leases.Shards``), and
what the hub says when the Lease API does not answer: one error line, logged when it appears or
changes, kept in the hub's ``errors["leases"]`` (``/api/v1/rollouts``, ``fedctl status``, the web
pages) — never a failed discovery. Rollouts whose Lease cannot have run out keep running.
Callers: ``hub.service`` at each discovery.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("federation.hub")

PART = "leases"


async def reconcile(shards: Any, rollouts: list[str], errors: dict[str, str]) -> set[str]:
    """The rollouts this replica runs now; ``errors`` (the hub's, by part) updated in place."""
    try:
        mine: set[str] = await shards.reconcile(rollouts)
        failed: dict[str, str] = dict(shards.errors)
    except Exception as exc:  # not an answer of the API: run only what cannot have moved
        mine, failed = shards.still_held() & set(rollouts), {"": f"{type(exc).__name__}: {exc}"}
    error = describe(failed, len(rollouts), len(mine))
    if error and error != errors.get(PART):
        log.error("%s", error)
    elif not error and PART in errors:
        log.info("leases: the API answers again")
    errors.pop(PART, None)
    if error:
        errors[PART] = error
    return mine


def describe(failed: dict[str, str], rollouts: int, running: int) -> str:
    """One line: for how many rollouts the Leases failed, the first reason, and what still runs."""
    if not failed:
        return ""
    which = ", ".join(sorted(k for k in failed if k)) or "all"
    return (f"leases: not renewed or taken for {len(failed) if '' not in failed else rollouts} of {rollouts} "
            f"rollout(s) ({which}): {next(iter(failed.values()))}; running the {running} whose Lease has not run out")
