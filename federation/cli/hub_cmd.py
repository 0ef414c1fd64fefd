"""``fedctl hub run`` (the service) and the commands that talk to a running hub:
``status`` and ``rollout pause|resume|promote|abort|retry|start|undo|watch SERVICE``."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer

from federation import specfiles
from federation.cli import output
from federation.core import spec as specs
from federation.core.errors import FederationError, PermanentError, Problem, SpecError, TemporaryError
from federation.core.weights import Subset, as_percent

hub = typer.Typer(help="The hub service.", no_args_is_help=True)
rollout = typer.Typer(help="Control one rollout through the hub's API.", no_args_is_help=True)

HubOpt = Annotated[str, typer.Option("--hub", envvar="FEDERATION_HUB", help="Hub API address.")]
TokenOpt = Annotated[str | None, typer.Option("--token", envvar="FEDERATION_TOKEN", show_default=False,
                                              help="Hub API bearer token (prefer --token-file: a command line "
                                                   "is visible to every user of the machine).")]
TokenFileOpt = Annotated[Path | None, typer.Option("--token-file", envvar="FEDERATION_TOKEN_FILE", show_default=False,
                                                   help="File holding the hub API bearer token.")]
FormatOpt = Annotated[output.Format, typer.Option("--output", "-o")]


def _token(token: str | None, token_file: Path | None = None) -> str:
    """The API token from exactly one source: FEDERATION_TOKEN/--token or a file
    (--token-file/FEDERATION_TOKEN_FILE). Two at once is an input error: which one wins would be
    a guess, and a stale one silently winning locks operators out."""
    if token and token_file is not None:
        raise SpecError([Problem("--token-file", "", "two token sources (FEDERATION_TOKEN or --token, and "
                                 f"--token-file or FEDERATION_TOKEN_FILE={token_file}): keep one")])
    if token:
        return token
    if token_file is not None:
        try:
            value = token_file.read_text().strip()
        except OSError as exc:
            raise SpecError([Problem(str(token_file), "", f"cannot read the token file: {exc.strerror}")]) from None
        if not value:
            raise SpecError([Problem(str(token_file), "", "the token file is empty")])
        return value
    raise PermanentError("no API token: set FEDERATION_TOKEN_FILE (or pass --token-file), or FEDERATION_TOKEN")


@hub.command("run")
def run(fleet: Annotated[Path, typer.Option("--fleet", "-f", envvar="FEDERATION_FLEET")],
        state_dir: Annotated[Path, typer.Option(envvar="FEDERATION_STATE_DIR", help="State, clones and commands.")],
        listen: Annotated[str, typer.Option(help="API address (host:port).")] = "127.0.0.1:8080",
        token_file: Annotated[Path | None, typer.Option(envvar="FEDERATION_TOKEN_FILE", help="API token file.")] = None,
        tick: Annotated[float, typer.Option(help="Seconds between ticks while a step converges.")] = 1.0,
        lease_namespace: Annotated[str | None, typer.Option(help="Run as one of several replicas: shard rollouts by "
                                                                 "Leases in this namespace of the hub's cluster.")] = None,
        kubeconfig: Annotated[Path | None, typer.Option(help="Kubeconfig of the hub's cluster (default: in-cluster).")] = None,
        identity: Annotated[str | None, typer.Option(envvar="POD_NAME", help="This replica's name in the Leases.")] = None,
        max_rollouts: Annotated[int | None, typer.Option(help="Free rollouts this replica takes at most "
                                                            "(orphaned ones are always taken over).")] = None,
        state_store: Annotated[str, typer.Option(help="Where rollout status lives: 'file' (under --state-dir) or "
                                                     "'configmap' (one ConfigMap per rollout on the hub's cluster).")] = "file",
        state_namespace: Annotated[str | None, typer.Option(help="Namespace of the status ConfigMaps "
                                                            "(default: --lease-namespace).")] = None,
        git_commit_url: Annotated[str, typer.Option(envvar="FEDERATION_GIT_COMMIT_URL",
                                                    help="Link to a commit on the web pages: a template of {repo} "
                                                         "(zone or mesh), {url} (its Git URL) and {sha}.")] = "",
        log_json: Annotated[bool, typer.Option("--log-json", help="One JSON object per log line.")] = False,
        verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False) -> None:
    """Run every FederatedCanary found in the fleet's mesh repo, with the HTTP API (and the web
    dashboard at /ui/) on --listen."""
    from federation.hub import api, logs, service

    logs.configure(json_lines=log_json, level=logging.DEBUG if verbose else logging.INFO)
    token = _token(os.environ.get("FEDERATION_TOKEN"), token_file)  # two sources at once: exit 2
    if len(token) < api.MIN_TOKEN:
        raise SpecError([Problem(str(token_file) if token_file else "FEDERATION_TOKEN", "",
                                 f"the API token must be at least {api.MIN_TOKEN} characters")])
    f = specfiles.load_one(fleet, specs.Fleet)
    if git_commit_url:
        from federation.hub import webpages

        problem = webpages.check_commit_url(git_commit_url)
        if problem:
            raise SpecError([Problem("--git-commit-url", "", problem)])
    host, _, port = listen.rpartition(":")
    if state_store not in ("file", "configmap"):
        raise SpecError([Problem("--state-store", "", f"{state_store!r} is not one of: file, configmap")])
    store_namespace = state_namespace or lease_namespace
    if state_store == "configmap" and not store_namespace:
        raise SpecError([Problem("--state-store", "", "configmap needs --state-namespace (or --lease-namespace)")])
    shards = store = hub_api = None
    if lease_namespace or state_store == "configmap":
        from federation.runtimes import kubernetes as kube

        kc = specs.Kubeconfig(path=str(kubeconfig), in_cluster=False) if kubeconfig else specs.Kubeconfig(in_cluster=True)
        hub_api = kube.Api(kube.api_client(kc))
    if lease_namespace and hub_api is not None:
        import socket

        from federation.runtimes.leases import Shards

        shards = Shards(hub_api, lease_namespace, identity or socket.gethostname(), max_share=max_rollouts)
    commands = None
    if state_store == "configmap":
        from federation.hub.commands import ConfigMapCommands
        from federation.hub.store import ConfigMapStore

        store = ConfigMapStore(hub_api, str(store_namespace))
        commands = ConfigMapCommands(hub_api, str(store_namespace))
    h = service.Hub(f, state_dir, tick=tick, shards=shards, discover_every=2.0 if shards else 5.0,
                    events=hub_api if shards and lease_namespace else None, store=store,
                    commands=commands)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, h.stop)
        await api.serve(h, token, host or "127.0.0.1", int(port), commit_url=git_commit_url)

    asyncio.run(main())


def _client(hub_url: str, token: str, timeout: float = 10.0) -> httpx.Client:
    return httpx.Client(base_url=hub_url, headers={"Authorization": f"Bearer {token}"}, timeout=timeout)


def _call(hub_url: str, token: str, method: str, path: str, params: dict[str, Any] | None = None,
          timeout: float = 10.0, answers: tuple[int, ...] = ()) -> Any:
    """One API call; ``answers``: status codes >= 400 whose JSON body is returned, not raised."""
    try:
        with _client(hub_url, token, timeout) as c:
            r = c.request(method, path, params=params)
    except httpx.HTTPError as exc:
        raise TemporaryError(f"hub at {hub_url} unreachable: {exc}") from None
    if r.status_code == 401:
        raise PermanentError("the hub refused the token (401)")
    if r.status_code >= 500:
        raise TemporaryError(f"hub at {hub_url} answered {r.status_code}")
    if r.status_code >= 400 and r.status_code not in answers:
        detail = r.json().get("detail") if r.headers.get("content-type", "").startswith("application/json") else r.text
        raise FederationError(f"hub answered {r.status_code}: {detail}")
    return r.json()


def _key(service: str, items: list[dict[str, Any]] | None = None) -> str:
    if "/" in service:
        return service
    for it in items or []:
        if it["rollout"].split("/", 1)[1] == service:
            return str(it["rollout"])
    raise FederationError(f"no rollout for service {service!r}")


def _row(r: dict[str, Any]) -> list[Any]:
    weights = " ".join(f"{Subset.parse(k)}={as_percent(v)}" for k, v in r["weights"].items())
    zones = " ".join(f"{z}:{'?' if v['appliedStep'] is None else v['appliedStep']}" for z, v in r["zones"].items())
    message = r["message"]
    if r.get("invalid") and r["phase"] != "Invalid":  # it runs its last valid spec until the file is fixed
        message = f"invalid spec (running the last valid one): {r['invalid']}; {message}"
    stuck = r.get("commandNotCleared")
    if stuck:
        message = f"command {stuck['command']} applied, not cleared: {stuck['error']}; {message}"
    nxt = r.get("nextRelease")
    if nxt:  # the status still describes the previous rollout; the new release starts at the next tick
        message = f"new release {nxt['canary']['version']}@{'+'.join(nxt['canary']['zones'])} starting; " + message
    waiting = [f"{z}: {v['reason']}" for z, v in r["zones"].items() if v.get("reason")]
    if waiting:
        message = f"{message} | waiting on " + "; ".join(waiting)
    return [r["rollout"], r["phase"] + (" (paused)" if r["paused"] else ""), as_percent(r["canaryWeight"]), weights,
            f"{r['failedChecks']}/{r['threshold']}", r["step"], zones or "-", message[:400]]


COLUMNS = ["rollout", "phase", "canary", "weights", "failed", "step", "zones (applied step)", "message"]


def status(hub_url: HubOpt = "http://127.0.0.1:8080", token: TokenOpt = None, token_file: TokenFileOpt = None,
           fmt: FormatOpt = output.Format.table) -> None:
    """Every rollout the hub runs: phase, weights per (zone, version), failed checks, zone convergence."""
    data = _call(hub_url, _token(token, token_file), "GET", "/api/v1/rollouts")
    output.emit(data, fmt, COLUMNS, [_row(r) for r in data["items"]], title="rollouts")
    shown = {r["rollout"] for r in data["items"]}
    for key, problem in data.get("problems", {}).items():
        if key not in shown:  # a rollout shown Invalid has its reason in its row
            output.error(f"{key}: {problem}")
    for error in data.get("errors", {}).values():  # the hub's own trouble (its Leases)
        output.error(f"hub: {error}")


WaitOpt = Annotated[float, typer.Option("--wait", help="Seconds to wait for the hub's answer (0: do not wait).")]
NoWaitOpt = Annotated[bool, typer.Option("--no-wait", help="Queue the command and return at once (fire and forget).")]


def _answer(res: dict[str, Any]) -> None:
    """Print the hub's answer; exit 1 when it rejected the command, 3 when it did not answer in time."""
    line = f"{res['rollout']}: {res['command']} {res['state']}: {res['message']}"
    if res["state"] == "rejected":
        output.error(line)
        raise typer.Exit(1)
    if res["state"] == "pending":
        output.error(line)
        raise typer.Exit(3)
    output.info(line)


def _control(command: str, doc: str) -> Any:
    def cmd(service: Annotated[str, typer.Argument(help="Service (name or namespace/name).")],
            hub_url: HubOpt = "http://127.0.0.1:8080", token: TokenOpt = None, token_file: TokenFileOpt = None,
            wait: WaitOpt = 30.0, no_wait: NoWaitOpt = False) -> None:
        t = _token(token, token_file)
        key = _key(service, _call(hub_url, t, "GET", "/api/v1/rollouts")["items"])
        w = 0.0 if no_wait else min(max(wait, 0.0), 120.0)
        _answer(_call(hub_url, t, "POST", f"/api/v1/rollouts/{key}/{command}", params={"wait": w},
                      timeout=w + 10.0, answers=(409,)))

    cmd.__doc__ = doc + " Waits for the hub's answer: exit 0 accepted, 1 rejected (with the reason)."
    return cmd


for _name, _cmd, _doc in [
    ("pause", "pause", "Hold the rollout where it is (no step, no analysis) until resume."),
    ("resume", "resume", "Resume a paused rollout."),
    ("promote", "promote", "Manual gate: skip the remaining analysis and promote now."),
    ("abort", "abort", "Roll the running canary back now (a rollback commit)."),
    ("retry", "retry", "Run a failed rollout again with the same canary."),
    ("start", "retry", "Start a failed rollout again (same as retry)."),
]:
    rollout.command(_name)(_control(_cmd, _doc))


@rollout.command("undo")
def undo(service: Annotated[str, typer.Argument(help="Service (name or namespace/name).")],
         hub_url: HubOpt = "http://127.0.0.1:8080", token: TokenOpt = None, token_file: TokenFileOpt = None,
         skip_analysis: Annotated[bool, typer.Option("--skip-analysis", help="Shift all traffic at once, "
                                                     "without analysis (an emergency).")] = False) -> None:
    """Go back to the previously promoted version: a new rollout (committed to the mesh repo) from
    what serves now to the version promoted before it, through analysis unless --skip-analysis.
    Refused (exit 1, with the reason) while a rollout runs or when nothing was promoted before."""
    t = _token(token, token_file)
    key = _key(service, _call(hub_url, t, "GET", "/api/v1/rollouts")["items"])
    _answer(_call(hub_url, t, "POST", f"/api/v1/rollouts/{key}/undo", params={"skipAnalysis": skip_analysis},
                  timeout=60.0, answers=(409,)))


def _discovering(hub_url: str) -> bool:
    try:
        return httpx.get(f"{hub_url}/readyz", timeout=5.0).status_code == 503
    except httpx.HTTPError:
        return True


@rollout.command("watch")
def watch(service: Annotated[str, typer.Argument()], hub_url: HubOpt = "http://127.0.0.1:8080", token: TokenOpt = None,
          token_file: TokenFileOpt = None,
          interval: Annotated[float, typer.Option(help="Seconds between polls.")] = 2.0,
          until_done: Annotated[bool, typer.Option("--until-done", help="Exit when the rollout ends.")] = False,
          max_backoff: Annotated[float, typer.Option(help="Longest wait between reconnection attempts.")] = 30.0) -> None:
    """Live progress: one line each time the rollout changes. Reconnects (with backoff, saying so)
    when the hub is unreachable or restarting; Ctrl-C ends it."""
    t = _token(token, token_file)
    last = None
    backoff = 0.0
    while True:
        try:
            items = _call(hub_url, t, "GET", "/api/v1/rollouts")["items"]
            try:
                key = _key(service, items)
            except FederationError:
                if _discovering(hub_url):  # a hub just started: its rollouts are not known yet
                    raise TemporaryError(f"hub at {hub_url} is starting (discovering rollouts)") from None
                # Discovery may have ended between the list and the readiness check: ask again
                # before saying there is no such rollout.
                key = _key(service, _call(hub_url, t, "GET", "/api/v1/rollouts")["items"])
            r = _call(hub_url, t, "GET", f"/api/v1/rollouts/{key}")
        except TemporaryError as exc:
            backoff = min(max_backoff, backoff * 2 or 1.0)
            output.error(f"{time.strftime('%H:%M:%S')} {exc}; reconnecting in {backoff:g}s")
            time.sleep(backoff)
            continue
        if backoff:
            output.error(f"{time.strftime('%H:%M:%S')} reconnected to the hub at {hub_url}")
            backoff = 0.0
        line = _row(r)
        if line != last:
            output.info(f"{time.strftime('%H:%M:%S')} " + "  ".join(str(x) for x in line[1:]))
            last = line
        if until_done and r["phase"] in ("Succeeded", "Failed") and r["upToDate"]:
            raise typer.Exit(0 if r["phase"] == "Succeeded" else 1)
        time.sleep(interval)


def register(app: typer.Typer) -> None:
    app.add_typer(hub, name="hub")
    app.add_typer(rollout, name="rollout")
    app.command("status")(status)
