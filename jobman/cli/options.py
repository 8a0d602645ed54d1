"""Options several commands share, declared once; typer checks their choices."""

from __future__ import annotations

from typing import Annotated

import typer

from jobman.backends.names import BackendName

DEFAULT_REGION = "us-east-1"

BackendOption = Annotated[BackendName | None, typer.Option(
    "--backend", case_sensitive=False, show_default=False,
    help="The backend to look at: 'local' or 'sagemaker' (default: as the command says).")]
RegionOption = Annotated[str, typer.Option("--region", help="The region, with --backend.")]
EVERY_HELP = "Repeat every DURATION (e.g. '5m') until interrupted."
EveryOption = Annotated[str | None, typer.Option("--every", help=EVERY_HELP, show_default=False)]
