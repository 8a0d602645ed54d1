"""The `jobman` command, and `python -m jobman`: the CLI, started without the cyclic garbage collector.

Starting imports SQLAlchemy, typer and rich: a few hundred thousand objects that live as long as the process.
The collector would walk them again and again while they load, and once more on the way out; for a quick
command (`jobman status`) that was a quarter of its time. So it is off while they load, and whatever is loaded
by the end is frozen (never walked again). A command that may run long turns it back on (`_before_each_command`
in jobman/cli/__init__.py).
"""

from __future__ import annotations

import gc


def main() -> None:
    gc.disable()
    from jobman.cli import main as cli_main

    try:
        cli_main()
    finally:
        gc.freeze()


if __name__ == "__main__":
    main()
