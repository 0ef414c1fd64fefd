"""``fed-agent``: serve (own SSH endpoint + loop), run (loop only, behind OpenSSH), rpc (forced command).

Standard library argparse so the agent's core runs on a bare Python 3.9+ of an old VM.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys

from vmagent import PROTOCOL_VERSION, __version__


def _ports(text: str) -> tuple[int, int]:
    low, _, high = text.partition("-")
    return int(low), int(high or low)


def _dirs(text: str) -> tuple[str, ...]:
    return tuple(d for d in text.split(":") if d)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--state-dir", default=os.environ.get("FED_AGENT_STATE", "/var/lib/fed-agent"))


def _loop_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--zone", required=True)
    p.add_argument("--envoy-admin", help="host:port of the local Envoy's admin endpoint")
    p.add_argument("--envoy-dir", help="directory of the local Envoy's cds.json and rds-<service>.json (one per service)")
    p.add_argument("--stat-prefix", default="ingress")
    p.add_argument("--ports", type=_ports, default=(20000, 20999), help="port range for app instances")
    p.add_argument("--targets-file", help="Prometheus file_sd file listing the app instances")
    p.add_argument("--stop-instances", action="store_true", help="stop app instances when the agent stops")
    p.add_argument("--runner", choices=("auto", "systemd", "process"), default="auto",
                   help="run app instances as systemd units (where systemd is the init system) or as "
                        "supervised processes; auto picks systemd when the host booted with it")
    p.add_argument("--unit-dir", default="/etc/systemd/system", help="where systemd unit files are written")
    p.add_argument("--systemctl", default="systemctl", help="the systemctl to call")
    p.add_argument("--allow-commands", default="/opt/fed-apps", type=_dirs,
                   help="colon-separated directories app commands must resolve under (this VM's own "
                        "configuration, never taken from Git); default /opt/fed-apps")
    p.add_argument("--app-user", default="fed-app",
                   help="the user apps run as (systemd User=, or the process runner when the agent is root)")
    p.add_argument("--allow-root-apps", action="store_true", help="let apps run as root (never by default)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fed-agent", description=__doc__)
    parser.add_argument("--log-level", default=os.environ.get("FED_AGENT_LOG", "INFO"))
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_serve = sub.add_parser("serve", help="own SSH endpoint (asyncssh) offering only the agent protocol")
    _common(p_serve)
    _loop_args(p_serve)
    p_serve.add_argument("--listen", default="127.0.0.1:2222")
    p_serve.add_argument("--host-key", required=True)
    p_serve.add_argument("--authorized-keys", required=True)
    p_serve.add_argument("--ready-file", help="write the bound port here once listening")
    p_run = sub.add_parser("run", help="the converge loop only (OpenSSH + forced command in front)")
    _common(p_run)
    _loop_args(p_run)
    p_rpc = sub.add_parser("rpc", help="answer protocol requests on stdin (the forced command)")
    _common(p_rpc)
    sub.add_parser("version", help="print agent and protocol versions")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s fed-agent %(message)s")
    if args.cmd == "version":
        print(f"fed-agent {__version__} protocol {PROTOCOL_VERSION}")
        return 0
    if args.cmd == "rpc":
        from vmagent import rpc

        return rpc.main(args.state_dir)
    from vmagent import converge

    config = converge.Config(args.state_dir, args.zone, args.envoy_admin, args.envoy_dir, args.stat_prefix,
                             args.ports, args.targets_file, runner=args.runner, unit_dir=args.unit_dir,
                             systemctl=args.systemctl, allowed_commands=args.allow_commands,
                             app_user=args.app_user or None, allow_root_apps=args.allow_root_apps)
    if args.cmd == "serve":
        from vmagent import server

        host, _, port = args.listen.rpartition(":")

        async def go() -> None:
            agent = converge.Agent(config)
            try:
                await server.serve(agent, host=host, port=int(port), host_key=args.host_key,
                                   authorized_keys=args.authorized_keys, ready_file=args.ready_file)
            finally:
                if args.stop_instances:
                    agent.shutdown_instances()

        asyncio.run(go())
        return 0

    async def loop_only() -> None:
        agent = converge.Agent(config)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, agent.stop)
        try:
            await agent.run()
        finally:
            if args.stop_instances:
                agent.shutdown_instances()

    asyncio.run(loop_only())
    return 0


if __name__ == "__main__":
    sys.exit(main())
