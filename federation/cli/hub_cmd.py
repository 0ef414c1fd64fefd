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
TokenOpt = Annotated[str | None, typer.Option("--token", envvar="FEDERATION_TOKEN", help="Hub API bearer token.",
                                              show_default=False)]
FormatOpt = Annotated[output.Format, typer.Option("--output", "-o")]


def _token(token: str | None, token_file: Path | None = None) -> str:
    if token:
        return token
    if token_file is not None:
        try:
            return token_file.read_text().strip()
        except OSError as exc:
            raise PermanentError(f"cannot read token file {token_file}: {exc.strerror}") from None
    raise PermanentError("no API token: set FEDERATION_TOKEN or pass --token")


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
        log_json: Annotated[bool, typer.Option("--log-json", help="One JSON object per log line.")] = False,
        verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False) -> None:
    """Run every FederatedCanary found in the fleet's mesh repo, with the HTTP API on --listen."""
    from federation.hub import api, logs, service

    logs.configure(json_lines=log_json, level=logging.DEBUG if verbose else logging.INFO)
    token = _token(os.environ.get("FEDERATION_TOKEN"), token_file)
    f = specfiles.load_one(fleet, specs.Fleet)
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
    if lease_namespace:
        import socket

        from federation.runtimes.leases import Shards

        shards = Shards(hub_api, lease_namespace, identity or socket.gethostname(), max_share=max_rollouts)
    commands = None
    if state_store == "configmap":
        from federation.hub.store import ConfigMapCommands, ConfigMapStore

        store = ConfigMapStore(hub_api, str(store_namespace))
        commands = ConfigMapCommands(hub_api, str(store_namespace))
    h = service.Hub(f, state_dir, tick=tick, shards=shards, discover_every=2.0 if shards else 5.0,
                    events=hub_api if shards and lease_namespace else None, store=store,
                    commands=commands)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, h.stop)
        await api.serve(h, token, host or "127.0.0.1", int(port))

    asyncio.run(main())


def _client(hub_url: str, token: str | None) -> httpx.Client:
    return httpx.Client(base_url=hub_url, headers={"Authorization": f"Bearer {_token(token)}"}, timeout=10.0)


def _call(hub_url: str, token: str | None, method: str, path: str) -> Any:
    try:
        with _client(hub_url, token) as c:
            r = c.request(method, path)
    except httpx.HTTPError as exc:
        raise TemporaryError(f"hub at {hub_url} unreachable: {exc}") from None
    if r.status_code == 401:
        raise PermanentError("the hub refused the token (401)")
    if r.status_code >= 400:
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
    stuck = r.get("commandNotCleared")
    if stuck:
        message = f"command {stuck['command']} applied, not cleared: {stuck['error']}; {message}"
    return [r["rollout"], r["phase"] + (" (paused)" if r["paused"] else ""), as_percent(r["canaryWeight"]), weights,
            f"{r['failedChecks']}/{r['threshold']}", r["step"], zones or "-", message[:160]]


COLUMNS = ["rollout", "phase", "canary", "weights", "failed", "step", "zones (applied step)", "message"]


def status(hub_url: HubOpt = "http://127.0.0.1:8080", token: TokenOpt = None, fmt: FormatOpt = output.Format.table) -> None:
    """Every rollout the hub runs: phase, weights per (zone, version), failed checks, zone convergence."""
    data = _call(hub_url, token, "GET", "/api/v1/rollouts")
    output.emit(data, fmt, COLUMNS, [_row(r) for r in data["items"]], title="rollouts")
    for key, problem in data.get("problems", {}).items():
        output.error(f"{key}: {problem}")


def _control(command: str, doc: str) -> Any:
    def cmd(service: Annotated[str, typer.Argument(help="Service (name or namespace/name).")],
            hub_url: HubOpt = "http://127.0.0.1:8080", token: TokenOpt = None) -> None:
        items = _call(hub_url, token, "GET", "/api/v1/rollouts")["items"]
        key = _key(service, items)
        res = _call(hub_url, token, "POST", f"/api/v1/rollouts/{key}/{command}")
        output.info(f"{res['rollout']}: {res['accepted']} requested")

    cmd.__doc__ = doc
    return cmd


for _name, _cmd, _doc in [
    ("pause", "pause", "Hold the rollout where it is (no step, no analysis) until resume."),
    ("resume", "resume", "Resume a paused rollout."),
    ("promote", "promote", "Manual gate: skip the remaining analysis and promote now."),
    ("abort", "abort", "Roll the canary back now (a rollback commit)."),
    ("undo", "abort", "Revert to the last promoted state: roll the running canary back (same as abort)."),
    ("retry", "retry", "Run a failed rollout again with the same canary."),
    ("start", "retry", "Start a failed or finished rollout again (same as retry)."),
]:
    rollout.command(_name)(_control(_cmd, _doc))


@rollout.command("watch")
def watch(service: Annotated[str, typer.Argument()], hub_url: HubOpt = "http://127.0.0.1:8080", token: TokenOpt = None,
          interval: Annotated[float, typer.Option(help="Seconds between polls.")] = 2.0,
          until_done: Annotated[bool, typer.Option("--until-done", help="Exit when the rollout ends.")] = False) -> None:
    """Live progress: one line each time the rollout changes."""
    last = None
    while True:
        items = _call(hub_url, token, "GET", "/api/v1/rollouts")["items"]
        r = _call(hub_url, token, "GET", f"/api/v1/rollouts/{_key(service, items)}")
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
