"""The hub's web dashboard: fleet, rollouts and one-rollout pages, and the operator's actions.

Served by ``fedctl hub run`` beside the API (``api.app_for`` mounts it under ``/ui``). The API
token is exchanged once, on the login page, for a session cookie (HttpOnly, SameSite=Strict,
Secure over HTTPS); every page, asset and data route needs that session, except the login page
and its stylesheet. State-changing requests (actions, logout) need the session's CSRF token in the
``X-CSRF-Token`` header (the page reads it from its ``<meta name="csrf-token">``). Pages carry a
Content-Security-Policy without inline script: the page behaviour is ``static/app.js``, the
charts are chart.js served from ``static/vendor`` (``scripts/web-assets``, no CDN). Pages update
in place when ``hub.webstream``'s server-sent events say their data changed (polling when the
stream is down). Actions go
through ``views.command``, the call the API's ``POST /api/v1/rollouts/.../{command}`` makes.
"""

from __future__ import annotations

import asyncio
import secrets
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request, Response
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse

from federation.core.state import COMMANDS, Phase
from federation.hub import views, webpages, webstream
from federation.hub.service import Hub
from federation.runtimes import reach

STATIC = Path(__file__).parent / "static"
COOKIE = "federation_session"
CSRF_HEADER = "X-CSRF-Token"
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
PUBLIC_ASSETS = {"login.css"}
ASSETS = {"app.js": "text/javascript", "app.css": "text/css", "login.css": "text/css",
          "vendor/chart.umd.js": "text/javascript"}
# Shown first on the rollouts page: waiting for a person (a gate, a promotion) or paused.
WAITING = (Phase.WAITING.value, Phase.WAITING_PROMOTION.value)


class Sessions:
    """Session id -> (CSRF token, expiry), in memory: a restarted hub asks for the token again."""

    def __init__(self, ttl: float = 12 * 3600, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl, self.clock = ttl, clock
        self._s: dict[str, tuple[str, float]] = {}

    def open(self) -> tuple[str, str]:
        sid, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        self._s[sid] = (csrf, self.clock() + self.ttl)
        return sid, csrf

    def csrf(self, sid: str | None) -> str | None:
        """The session's CSRF token, or None for no (or an expired) session."""
        if not sid or sid not in self._s:
            return None
        csrf, until = self._s[sid]
        if self.clock() > until:
            del self._s[sid]
            return None
        return csrf

    def close(self, sid: str | None) -> None:
        self._s.pop(sid or "", None)


class NeedLogin(Exception):
    """No session: pages go to the login page, data and assets answer 401."""


def mount(app: FastAPI, hub: Hub, token: str, sessions: Sessions | None = None, commit_url: str = "") -> Sessions:
    """``commit_url``: how to link a commit on the Git host (``check_commit_url``); empty: no links."""
    sessions = sessions if sessions is not None else Sessions()

    def session(request: Request) -> str:
        csrf = sessions.csrf(request.cookies.get(COOKIE))
        if csrf is None:
            raise NeedLogin()
        return csrf

    def data_session(request: Request) -> str:
        csrf = sessions.csrf(request.cookies.get(COOKIE))
        if csrf is None:
            raise HTTPException(401, "no session: log in at /ui/login")
        return csrf

    def checked(request: Request, csrf: str = Depends(data_session)) -> None:
        sent = request.headers.get(CSRF_HEADER, "")
        if not secrets.compare_digest(sent.encode(), csrf.encode()):
            raise HTTPException(403, f"missing or wrong {CSRF_HEADER}")

    @app.exception_handler(NeedLogin)
    async def to_login(request: Request, exc: NeedLogin) -> Response:
        return RedirectResponse("/ui/login", status_code=303)

    @app.middleware("http")
    async def headers(request: Request, call_next: Any) -> Response:
        response: Response = await call_next(request)
        if request.url.path.startswith("/ui"):
            response.headers["Content-Security-Policy"] = CSP
            response.headers["X-Content-Type-Options"] = "nosniff"
            response.headers["Referrer-Policy"] = "no-referrer"
        return response

    @app.get("/ui/login", response_class=HTMLResponse, include_in_schema=False)
    def login_page(failed: bool = False) -> HTMLResponse:
        return HTMLResponse(webpages.login_html("wrong token" if failed else ""), status_code=401 if failed else 200)

    @app.post("/ui/login", include_in_schema=False)
    async def login(request: Request) -> Response:
        # The login form, urlencoded (parsed here: no multipart library for one field).
        sent = urllib.parse.parse_qs((await request.body()).decode("utf-8", "replace")).get("token", [""])[0]
        if not secrets.compare_digest(sent.encode(), token.encode()):
            return HTMLResponse(webpages.login_html("wrong token"), status_code=401)
        sessions.close(request.cookies.get(COOKIE))
        sid, _ = sessions.open()
        response = RedirectResponse("/ui/", status_code=303)
        response.set_cookie(COOKIE, sid, httponly=True, samesite="strict", path="/",
                            secure=request.url.scheme == "https", max_age=int(sessions.ttl))
        return response

    @app.post("/ui/logout", include_in_schema=False, dependencies=[Depends(checked)])
    def logout(request: Request) -> Response:
        sessions.close(request.cookies.get(COOKIE))
        response = JSONResponse({"state": "logged out"})
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
        return response

    @app.get("/ui/static/{path:path}", include_in_schema=False)
    def asset(request: Request, path: str) -> Response:
        if path not in PUBLIC_ASSETS and sessions.csrf(request.cookies.get(COOKIE)) is None:
            raise HTTPException(401, "no session")
        if path not in ASSETS or not (STATIC / path).is_file():
            raise HTTPException(404, f"no asset {path}")
        return FileResponse(STATIC / path, media_type=ASSETS[path])

    @app.get("/ui/", response_class=HTMLResponse, include_in_schema=False)
    def fleet_page(csrf: str = Depends(session)) -> HTMLResponse:
        return HTMLResponse(webpages.page_html("fleet", csrf))

    @app.get("/ui/rollouts", response_class=HTMLResponse, include_in_schema=False)
    def rollouts_page(csrf: str = Depends(session)) -> HTMLResponse:
        return HTMLResponse(webpages.page_html("rollouts", csrf))

    @app.get("/ui/rollouts/{namespace}/{name}", response_class=HTMLResponse, include_in_schema=False)
    def rollout_page(namespace: str, name: str, csrf: str = Depends(session)) -> HTMLResponse:
        return HTMLResponse(webpages.page_html("rollout", csrf, f"{namespace}/{name}"))

    # -- data for the pages (same session), and their live stream --------------------------------

    webstream.mount(app, hub, sessions, COOKIE)

    reached: dict[str, Any] = {"at": None, "rows": []}
    checking = asyncio.Lock()

    @app.get("/ui/api/fleet", include_in_schema=False, dependencies=[Depends(data_session)])
    async def fleet() -> dict[str, Any]:
        return {"zones": webpages.fleet_view(hub), "reach": reached}

    @app.post("/ui/api/fleet/check", include_in_schema=False, dependencies=[Depends(checked)])
    async def check_fleet() -> dict[str, Any]:
        """Probe every zone's Git, Prometheus, SSH hosts or API and Flux, and Envoys now (one probe
        at a time; a click during one waits for its result)."""
        async with checking:
            rows = await reach.check(hub.fleet)
            reached.update(at=time.time(), rows=rows)
        return reached

    @app.get("/ui/api/rollouts", include_in_schema=False, dependencies=[Depends(data_session)])
    async def rollouts() -> dict[str, Any]:
        items = await views.rollouts(hub)
        now = time.time()
        for item in items:
            since = (await hub.store.load(item["rollout"])).last_transition_at
            item["inPhaseSeconds"] = None if since is None else max(0.0, now - since)
        items.sort(key=lambda r: (not (r["paused"] or r["phase"] in WAITING), r["rollout"]))
        return {"items": items, "problems": hub.problems, "errors": hub.errors}

    @app.get("/ui/api/rollouts/{namespace}/{name}", include_in_schema=False, dependencies=[Depends(data_session)])
    async def rollout(namespace: str, name: str) -> dict[str, Any]:
        key = f"{namespace}/{name}"
        if key in hub.rejected:
            return {**await views.rejected(hub, key), "steps": [], "events": [], "thresholds": {}, "webhooks": []}
        if key not in hub.canaries:
            raise HTTPException(404, f"no rollout {key}")
        view = await views.rollout(hub, key)
        view["steps"] = list(hub.steps.get(key, ()))
        view["events"] = list(hub.events_seen.get(key, ()))[-100:]
        spec = hub.canaries[key].spec
        view["thresholds"] = {m.name: dict(zip(("min", "max"), m.bounds, strict=True)) for m in spec.analysis.metrics}
        answers = hub.hook_answers.get(key, {})
        view["webhooks"] = [{"name": h.name, "type": h.type.value, "url": h.url, "last": answers.get(h.name)}
                            for h in spec.analysis.webhooks or []]
        return view

    @app.get("/ui/api/rollouts/{namespace}/{name}/history", include_in_schema=False,
             dependencies=[Depends(data_session)])
    async def history(namespace: str, name: str) -> dict[str, Any]:
        """Every step of this rollout read back from the hub's clones: its commits per repo, linked."""
        key = f"{namespace}/{name}"
        if key not in hub.canaries:
            raise HTTPException(404, f"no rollout {key}")
        steps = [s for s in await views.history(hub, key) if s["rollout"] == key]
        urls = webpages.repo_urls(hub)
        for s in steps:
            commits: dict[str, str] = s["commits"]
            s["commits"] = [{"repo": repo, "sha": sha, "url": webpages.commit_link(commit_url, repo, urls.get(repo, ""), sha)}
                            for repo, sha in sorted(commits.items())]
        return {"items": steps}

    @app.post("/ui/api/rollouts/{namespace}/{name}/{command}", include_in_schema=False,
              dependencies=[Depends(checked)])
    async def action(namespace: str, name: str, command: str) -> JSONResponse:
        key = f"{namespace}/{name}"
        if key not in hub.canaries:
            raise HTTPException(404, f"no rollout {key}")
        if command not in COMMANDS:
            raise HTTPException(400, f"unknown command {command!r}; known: {', '.join(COMMANDS)}")
        res = await views.command(hub, key, command, 30.0)
        return JSONResponse(res, status_code={"accepted": 200, "rejected": 409}.get(res["state"], 202))

    return sessions
