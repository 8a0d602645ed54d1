"""A jobman process that takes a claim in the ledger and keeps it until it is killed: `kill -9` stands for a
machine that dies while holding it.

    python -m tests.team_holder gc                  # holds the gc lease
    python -m tests.team_holder run EXPERIMENT.toml # holds the experiment's run, as `jobman run` would

Prints "held" once the claim is in the ledger, then renews it (every third of JOBMAN_LEASE_S) forever.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from jobman.config import load_experiment
from jobman.identity import current_host, current_user, holder_name, site_for
from jobman.leases import held, lease_s, renewing, wall_now
from jobman.ledger.db import open_engine
from jobman.ledger.store import Ledger


async def hold(what: str, file: str | None) -> None:
    async with open_engine() as engine:
        ledger = Ledger(engine)
        if what == "gc":
            async with held(ledger, "gc"):
                print("held", flush=True)
                await asyncio.Event().wait()
        assert file is not None
        x = load_experiment(Path(file))
        claim = await ledger.open_run(
            x.name, digest=x.digest, backend=x.backend, region=x.aws.region, config_path=str(x.path),
            at=wall_now(), holder=holder_name(), lease_s=lease_s(), user=current_user(), host=current_host(),
            local_site=site_for(x.backend),
        )
        assert not claim.busy
        async with renewing(lambda until: ledger.renew_run(claim.run.id, holder=holder_name(), until=until),
                            lease_s(), "the run"):
            print("held", flush=True)
            await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(hold(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None))
