"""The ``fedctl`` entry point: builds the typer app from one module per command group.

Exit codes: 0 success; 1 a rollout or demo ended in failure; 2 bad input (specs, arguments);
3 an outside system failed (Git, SSH, Prometheus, Kubernetes). Errors are one line on stderr.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

import federation
from federation.cli import output, specs_cmd
from federation.core.errors import FederationError, PermanentError, SpecError, TemporaryError

EXIT_FAILED = 1
EXIT_INPUT = 2
EXIT_OUTSIDE = 3

app = typer.Typer(
    name="fedctl",
    help="Progressive delivery across Kubernetes clusters and VMs, with Git as the audit trail.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,
)


def _version(value: bool) -> None:
    if value:
        output.info(f"fedctl {federation.__version__}")
        raise typer.Exit()


@app.callback()
def _main(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                                help="Print the version (the installed package's) and exit.")] = False
          ) -> None:
    """Progressive delivery across Kubernetes clusters and VMs, with Git as the audit trail."""


specs_cmd.register(app)


def _register_optional() -> None:
    # Command groups that pull in heavier adapters are imported here so `fedctl validate` stays light.
    from federation.cli import agents_cmd, clusters_cmd, demo_cmd, history_cmd, hub_cmd, metrics_cmd

    agents_cmd.register(app)
    clusters_cmd.register(app)
    hub_cmd.register(app)
    demo_cmd.register(app)
    history_cmd.register(app)
    metrics_cmd.register(app)


_register_optional()


def run(argv: list[str] | None = None) -> None:
    """Console-script entry (``argv`` None: the process's arguments): map our errors to exit codes
    and one-line messages. Exits through ``SystemExit`` as every click program does."""
    try:
        app(args=argv, prog_name="fedctl", standalone_mode=True)
    except SpecError as exc:
        for p in exc.problems:
            output.error(str(p))
        sys.exit(EXIT_INPUT)
    except (TemporaryError, PermanentError) as exc:
        output.error(f"error: {exc}")
        sys.exit(EXIT_OUTSIDE)
    except FederationError as exc:
        output.error(f"error: {exc}")
        sys.exit(EXIT_FAILED)
    except KeyboardInterrupt:
        output.error("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    run()
