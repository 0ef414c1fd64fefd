"""The hub's HTTP API (FastAPI). Every /api route and the OpenAPI document (/openapi.json) need
the bearer token; the browsable /docs and /redoc pages are off.

``/healthz`` (the process answers), ``/readyz`` (the first discovery ran; counts only, no problem
texts) and ``/metrics`` (the Prometheus exposition) carry no secrets and need no token; ``/ui`` is
the web dashboard (``hub.web``: a session cookie for the token). Request bodies are bounded
(``MAX_BODY``). Callers: ``fedctl`` over HTTP, browsers.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Annotated, Any

import uvicorn
from fastapi import Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from federation.core.state import COMMANDS
from federation.hub import views, web
from federation.hub.service import Hub

_bearer = HTTPBearer(auto_error=False)
MIN_TOKEN = 16
MAX_BODY = 64 * 1024  # bytes of a request body; the API takes its parameters in the path and query


class BoundedBodies:
    """ASGI middleware: the request body is read here, up to MAX_BODY bytes, before the app runs;
    a larger one (by its Content-Length, or counted as a chunked body arrives) is answered 413."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length", b"")
        if (length.isdigit() and int(length) > MAX_BODY) or (length and not length.isdigit()):
            await self._refuse(send)
            return
        body = b""
        while True:
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, receive, send)  # the client went away: let the app see it
                return
            body += message.get("body", b"")
            if len(body) > MAX_BODY:
                await self._refuse(send)
                return
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Any:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    @staticmethod
    async def _refuse(send: Any) -> None:
        text = f'{{"detail":"request body larger than {MAX_BODY // 1024} KiB"}}'.encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(text)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": text})


def app_for(hub: Hub, token: str, commit_url: str = "") -> BoundedBodies:
    if len(token) < MIN_TOKEN:
        raise ValueError(f"the API token must be at least {MIN_TOKEN} characters")
    app = FastAPI(title="federation hub", version="v1", docs_url=None, redoc_url=None, openapi_url=None,
                  description="Progressive delivery across clusters and VMs: rollouts, per-zone state, controls.")

    def authorised(creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> None:
        if creds is None or not secrets.compare_digest(creds.credentials.encode(), token.encode()):
            raise HTTPException(status_code=401, detail="missing or wrong bearer token",
                                headers={"WWW-Authenticate": "Bearer"})

    auth = [Depends(authorised)]

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz(response: Response) -> dict[str, Any]:
        if not hub.ready.is_set():
            response.status_code = 503
            return {"status": "discovering"}
        # Public: counts only. What the problems are (file names, fields) is behind the token.
        return {"status": "ready", "rollouts": len(hub.canaries), "problems": len(hub.problems),
                "invalid": len(hub.invalid) + len(hub.rejected), "errors": len(hub.errors)}

    @app.get("/openapi.json", dependencies=auth, include_in_schema=False)
    def openapi() -> dict[str, Any]:
        return app.openapi()

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(hub.metrics.text(), media_type="text/plain; version=0.0.4")

    @app.get("/api/v1/rollouts", dependencies=auth)
    async def rollouts() -> dict[str, Any]:
        return {"items": await views.rollouts(hub), "problems": hub.problems, "errors": hub.errors}

    @app.get("/api/v1/rollouts/{namespace}/{name}", dependencies=auth)
    async def rollout(namespace: str, name: str) -> dict[str, Any]:
        key = f"{namespace}/{name}"
        if key in hub.rejected:
            return await views.rejected(hub, key)
        if key not in hub.canaries:
            raise HTTPException(404, f"no rollout {key}")
        return await views.rollout(hub, key)

    @app.get("/api/v1/history/{service}", dependencies=auth)
    async def history(service: str, limit: Annotated[int, Query(ge=1, le=10000)] = 1000) -> dict[str, Any]:
        """Every step of the service's rollouts, from the hub's clones of the fleet's repos."""
        return {"service": service, "items": await views.history(hub, service, limit)}

    @app.get("/api/v1/rollouts/{namespace}/{name}/metrics", dependencies=auth)
    async def metrics_now(namespace: str, name: str) -> dict[str, Any]:
        key = f"{namespace}/{name}"
        if key not in hub.canaries:
            raise HTTPException(404, f"no rollout {key}")
        return await views.analysis_now(hub, key)

    def answered(res: dict[str, Any]) -> JSONResponse:
        # 200 accepted, 409 rejected (with the reason), 202 queued or not consumed yet.
        code = {"accepted": 200, "rejected": 409}.get(res["state"], 202)
        return JSONResponse(res, status_code=code)

    @app.post("/api/v1/rollouts/{namespace}/{name}/undo", dependencies=auth)
    async def undo(namespace: str, name: str,
                   skip_analysis: Annotated[bool, Query(alias="skipAnalysis")] = False) -> JSONResponse:
        key = f"{namespace}/{name}"
        if key not in hub.canaries:
            raise HTTPException(404, f"no rollout {key}")
        return answered(await views.undo(hub, key, skip_analysis=skip_analysis))

    @app.post("/api/v1/rollouts/{namespace}/{name}/{command}", dependencies=auth)
    async def control(namespace: str, name: str, command: str,
                      wait: Annotated[float, Query(ge=0, le=120)] = 30.0) -> JSONResponse:
        """Queue the command, wake the rollout's worker and wait up to ``wait`` seconds for its answer."""
        key = f"{namespace}/{name}"
        if key in hub.rejected:
            return answered({"rollout": key, "command": command, "state": "rejected",
                             "message": f"the rollout does not run, its file is invalid: {hub.rejected[key]}"})
        if key not in hub.canaries:
            raise HTTPException(404, f"no rollout {key}")
        if command not in COMMANDS:
            raise HTTPException(400, f"unknown command {command!r}; known: {', '.join(COMMANDS)}, undo")
        return answered(await views.command(hub, key, command, wait))

    web.mount(app, hub, token, commit_url=commit_url)

    @app.middleware("http")
    async def no_store(request: Request, call_next: Any) -> Response:
        response: Response = await call_next(request)
        response.headers["Cache-Control"] = "no-store"
        return response

    return BoundedBodies(app)  # the ASGI app in front of FastAPI


async def serve(hub: Hub, token: str, host: str, port: int, commit_url: str = "") -> None:
    """Run the hub's loops and its API in one event loop until stopped."""
    config = uvicorn.Config(app_for(hub, token, commit_url), host=host, port=port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    hub_task = asyncio.create_task(hub.run(), name="hub")
    api_task = asyncio.create_task(server.serve(), name="api")
    done, _ = await asyncio.wait({hub_task, api_task}, return_when=asyncio.FIRST_COMPLETED)
    hub.stop()
    server.should_exit = True
    await asyncio.gather(hub_task, api_task, return_exceptions=True)
    for t in done:
        if t.exception() is not None:
            raise t.exception()  # type: ignore[misc]
