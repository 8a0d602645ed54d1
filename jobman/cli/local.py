"""`jobman local ...`: run, inspect and stop the local backend's server (a SageMaker twin on 127.0.0.1)."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer

from jobman.cli.output import console, domain_errors
from jobman.errors import BackendError, ConfigError
from jobman.paths import jobman_home

app = typer.Typer(
    help="The local backend's server: S3, SageMaker, SageMaker Runtime, CloudWatch Logs, STS and EventBridge "
    "Scheduler on 127.0.0.1, with real XGBoost training and endpoint processes underneath, and one-time schedules "
    "that really fire. Its state lives in $JOBMAN_HOME/local.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _idle_seconds(text: str) -> float:
    from jobman.durations import parse_duration_s

    if text.strip() in ("0", "0s", "never", "off"):
        return 0.0
    try:
        return parse_duration_s(text)
    except ValueError as exc:
        raise ConfigError(f"--idle-timeout: {exc} (or 0 to never stop)") from None


@app.command()
def serve(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1; 0 picks a free one.")] = 0,
    idle_timeout: Annotated[
        str,
        typer.Option(
            "--idle-timeout",
            help="Stop after this long with no request, no training job running, no endpoint up and no schedule "
            "left to fire, in seconds or like 90s, 10m, 1h. 0 (the default for serve) never stops.",
        ),
    ] = "0",
) -> None:
    """Run the server in the foreground until Ctrl-C (endpoint processes keep running after it stops)."""
    from jobman.backends.local import server

    with domain_errors():
        if not 0 <= port <= 65535:
            raise ConfigError(f"--port: {port} is not a port number (0-65535)")
        idle_s = _idle_seconds(idle_timeout)
        home = jobman_home()
        server.configure_logging()
        try:
            server.run(home, port=port, idle_timeout_s=idle_s, on_ready=lambda url: console.print(
                f"jobman local server at [bold]{url}[/bold] for {home}; Ctrl-C stops it.", highlight=False,
                soft_wrap=True))
        except server.AlreadyRunning as exc:
            raise BackendError(str(exc), code="LocalServerRunning") from None
        except OSError as exc:
            raise BackendError(f"cannot listen on 127.0.0.1:{port}: {exc.strerror or exc}",
                               code="LocalServerUnavailable") from None


@app.command()
def status(
    as_json: Annotated[bool, typer.Option("--json", help="Print the status as JSON.")] = False,
) -> None:
    """Show whether the server runs, its URL and pid, its training and transform jobs, endpoints, and pending
    schedules."""
    from jobman.backends.local.daemon import server_status

    with domain_errors():
        home = jobman_home()
        info = server_status(home)
        if as_json:
            payload = {"running": info is not None, "home": str(home), **(info or {})}
            sys.stdout.write(json.dumps(payload, indent=2) + "\n")
            return
        if info is None:
            console.print(f"No local server is running for {home}.", highlight=False)
            return
        _print_status(info)


def _print_status(info: dict[str, Any]) -> None:
    console.print(f"Local server [bold]{info['url']}[/bold]  pid {info['pid']}  up {info['uptime_s']:.0f} s  "
                  f"home {info['home']}", highlight=False)
    jobs = ", ".join(f"{n} {s}" for s, n in sorted(info["training_jobs"].items())) or "none"
    console.print(f"Training jobs: {jobs}", highlight=False)
    transforms = ", ".join(f"{n} {s}" for s, n in sorted(info.get("transform_jobs", {}).items())) or "none"
    console.print(f"Transform jobs: {transforms}", highlight=False)
    console.print(f"Schedules pending: {info.get('schedules_pending', 0)}", highlight=False)
    rows = info["endpoint_processes"]
    if not rows:
        console.print("Endpoints: none", highlight=False)
        return
    from rich.table import Table  # only here: `jobman --help` mounts this app without it

    table = Table("endpoint", "region", "status", "pid", "port")
    for row in rows:
        table.add_row(row["name"], row["region"], row["status"], str(row["pid"] or "-"), str(row["port"] or "-"))
    console.print(table)


@app.command()
def stop(
    endpoints: Annotated[
        bool,
        typer.Option(
            "--endpoints/--keep-endpoints",
            help="Also stop every endpoint process (the endpoints become OutOfService) and every running "
            "training and transform job (Stopped). By default they keep running, as real endpoints do.",
        ),
    ] = False,
) -> None:
    """Stop the server."""
    from jobman.backends.local.daemon import stop_server

    with domain_errors():
        home = jobman_home()
        stopped = stop_server(home, stop_endpoints=endpoints)
        if stopped:
            what = " and its endpoint, training and transform processes" if endpoints else ""
            console.print(f"Stopped the local server{what}.", highlight=False)
        else:
            leftovers = " (any leftover worker processes are stopped)" if endpoints else ""
            console.print(f"No local server was running for {home}{leftovers}.", highlight=False)
