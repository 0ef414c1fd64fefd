"""The web dashboard's HTML shells and the views its data routes share: the login page and the
three page shells (all behaviour is ``static/app.js``; no inline script), links from a commit to
the Git host through ``fedctl hub run --git-commit-url``, and the fleet as the last ticks saw it.
Callers: ``hub.web``, ``fedctl hub run`` (checking the commit URL template).
"""

from __future__ import annotations

import html
import re
from typing import Any

from federation.hub.service import Hub

PAGES = {"fleet": "Fleet", "rollouts": "Rollouts", "rollout": "Rollout"}

TEMPLATE_FIELDS = ("repo", "url", "sha")


def check_commit_url(template: str) -> str:
    """Why ``template`` cannot link a commit (empty: it can): it must name {sha} and nothing else
    than {repo}, {url}, {sha}."""
    fields = re.findall(r"\{([^{}]*)\}", template)
    unknown = sorted({f for f in fields if f not in TEMPLATE_FIELDS})
    if unknown:
        return f"unknown field(s) {', '.join('{' + f + '}' for f in unknown)}; known: {{repo}}, {{url}}, {{sha}}"
    if "sha" not in fields:
        return "the template must contain {sha}"
    if not template.startswith(("https://", "http://")):
        return "the template must start with https:// or http://"
    return ""


def commit_link(template: str, repo: str, url: str, sha: str) -> str | None:
    if not template:
        return None
    return template.format(repo=repo, url=url.removesuffix(".git"), sha=sha)


def repo_urls(hub: Hub) -> dict[str, str]:
    """Repo name (zone, or ``mesh``) -> its Git URL, as history names them."""
    return {"mesh": hub.fleet.spec.mesh.git.url, **{z.name: z.git.url for z in hub.fleet.spec.zones}}


def fleet_view(hub: Hub) -> list[dict[str, Any]]:
    """Every zone with its kind, its sources, and what the last tick of each rollout saw of it."""
    out = []
    for z in hub.fleet.spec.zones:
        seen: dict[str, Any] = {}
        for key, report in sorted(hub.last.items()):
            obs = report.zones.get(z.name)
            if obs is None:
                continue
            seen[key] = {"appliedStep": obs.applied_step(), "reasons": obs.reasons(),
                         "waiting": hub.waiting.get(key, {}).get(z.name, "")}
        out.append({"name": z.name, "kind": z.kind.value, "git": z.git.url, "prometheus": z.prometheus.url,
                    "hosts": [f"{h.user}@{h.address}:{h.port}" for h in z.hosts or []],
                    "reachable": all(s["appliedStep"] is not None or not s["reasons"] for s in seen.values())
                    if seen else None,
                    "rollouts": seen})
    return out


def head(title: str) -> str:
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)} · federation'
            '</title><meta name="viewport" content="width=device-width, initial-scale=1"><link rel="icon" href="data:,">')


def login_html(error: str) -> str:
    err = f'<p class="error" role="alert">{html.escape(error)}</p>' if error else ""
    return (head("Log in") + '<link rel="stylesheet" href="/ui/static/login.css"></head><body>'
            '<main><h1>federation hub</h1>' + err +
            '<form method="post" action="/ui/login"><label for="token">API token</label>'
            '<input id="token" name="token" type="password" autocomplete="current-password" required>'
            '<button type="submit">Log in</button></form></main></body></html>')


def page_html(page: str, csrf: str, rollout: str = "") -> str:
    nav = "".join(f'<a href="{href}"{" aria-current=page" if page == p else ""}>{label}</a>'
                  for p, href, label in (("fleet", "/ui/", "Fleet"), ("rollouts", "/ui/rollouts", "Rollouts")))
    title = rollout or PAGES[page]
    return (head(title) + f'<meta name="csrf-token" content="{html.escape(csrf)}">'
            '<link rel="stylesheet" href="/ui/static/app.css">'
            '<script src="/ui/static/vendor/chart.umd.js" defer></script>'
            '<script src="/ui/static/app.js" defer></script></head>'
            f'<body data-page="{page}" data-rollout="{html.escape(rollout)}">'
            f'<header><strong>federation</strong><nav>{nav}</nav>'
            '<button id="logout" type="button">Log out</button></header>'
            f'<main><h1>{html.escape(title)}</h1><p id="status" role="status"></p><div id="content"></div></main>'
            '</body></html>')
