"""`jobman run` against the in-memory backend, interrupted by SIGINT after a random delay, many times in one process.

Run as `python -m tests.integration.interrupt_harness ROUNDS SEED WORKDIR`. Each round is the real `run_command`
(the CLI's Ctrl-C handling, the ledger, the run flow) on a fresh JOBMAN_HOME, with only the backend swapped for
the fake one, so that a round takes a fraction of a second and the signal lands at many different moments: in a
ledger write, a commit, a session's close, a poll's sleep, an engine's dispose. The first two rounds are not
interrupted: the second (imports done) measures how long a whole run takes; the others draw their delay from it.

Round N's stderr goes to WORKDIR/round-N.err; a round that hangs (past HANG_S) gets every thread's stack
there, and the harness exits with status 1. The last line of stdout is a JSON list of each round's outcome:
"interrupted" (exit 130), "completed", or "late" (the signal came after the run had ended, when Python's own
handler raised KeyboardInterrupt somewhere in this harness: not a moment jobman can do anything about).
"""

from __future__ import annotations

import faulthandler
import json
import os
import random
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

# Sooner, the signal lands before `asyncio.run` has made its loop (in Python, not in jobman): its half-made loop's
# __del__ then prints an "Exception ignored" traceback that no program can prevent.
MIN_DELAY_S = 0.005
HANG_S = 60.0  # a round takes well under a second


def main(rounds: int, seed: int, workdir: Path) -> None:
    import typer

    import jobman.backends.factory as factory
    from jobman.backends.fake import FakeBackend
    from jobman.cli.run_cmd import run_command
    from tests.conftest import write_experiment

    async def fake_backend(name: str, aws: Any) -> FakeBackend:
        return FakeBackend(name=name, region=aws.region, training_polls=1, endpoint_polls=1)

    factory.open_backend = fake_backend  # type: ignore[assignment]  # run_command imports it at call time
    os.environ["JOBMAN_POLL_S"] = "0.005"
    os.chdir(workdir)
    path = write_experiment(workdir / "exp.toml")
    rng = random.Random(seed)
    outcomes: list[str] = []
    full_run_s = 0.0
    for number in range(rounds):
        os.environ["JOBMAN_HOME"] = str(workdir / f"home-{number}")
        _stderr_to(workdir / f"round-{number}.err")
        faulthandler.dump_traceback_later(HANG_S, exit=True)
        delay_s = None if number < 2 else rng.uniform(MIN_DELAY_S, full_run_s)
        timer = threading.Timer(delay_s or 0, os.kill, (os.getpid(), signal.SIGINT))
        started = time.monotonic()
        try:
            try:
                if delay_s is not None:
                    timer.start()
                run_command(path)
                outcome = "completed"
            except typer.Exit as exc:
                outcome = "interrupted" if exc.exit_code == 130 else f"exit {exc.exit_code}"
            finally:
                timer.cancel()
                if delay_s is not None:
                    timer.join()
                time.sleep(0.01)  # a signal sent just as the run ended is handled here, not in the next round
        except KeyboardInterrupt:  # the run had ended: Python's default handler was back
            outcome = "late"
        faulthandler.cancel_dump_traceback_later()
        if number == 1:
            full_run_s = time.monotonic() - started
        elif outcome == "completed" and delay_s is not None:
            # The signal came after the run: the measured run was slower than runs are now (a busy machine).
            # Draw later delays from a shorter span, so most rounds are still interrupted mid-run.
            full_run_s = max(MIN_DELAY_S * 2, full_run_s * 0.7)
        outcomes.append(outcome)
    print(json.dumps(outcomes), flush=True)


def _stderr_to(path: Path) -> None:
    sys.stderr.flush()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 2)
    os.close(fd)


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3]))
