"""What the server's training and transform jobs share: their records and files, and counting, finding and
stopping the ones that run. A job's state is its worker's files and whether that worker lives, never
server memory, so a server restart loses nothing."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Any

from jobman.backends.local import supervisor
from jobman.backends.local.store import Layout, RecordStore, atomic_write_json, read_json
from jobman.backends.local.supervisor import ProcessRef
from jobman.backends.local.training_state import JobFiles
from jobman.backends.local.wire import now

log = logging.getLogger("jobman.local.jobs")

STOP_GRACE_S = 10.0  # SIGKILL a worker that has not stopped this long after SIGTERM
RUNNING = ("InProgress", "Stopping")


class JobManager:
    resource_type: str  # the ARN resource type, which also names the records' folder
    name_key: str  # e.g. "TrainingJobName"
    arn_key: str  # e.g. "TrainingJobArn"
    status_key: str  # e.g. "TrainingJobStatus"
    summary_fields: tuple[str, ...]  # what a List summary carries from the job's status, when it has them
    worker_module: str  # the module the job's worker process runs
    noun: str  # e.g. "training job", in the server's log

    def __init__(self, layout: Layout, spawn: supervisor.Spawner = supervisor.spawn_module) -> None:
        self.layout = layout
        self.spawn = spawn
        self._finished: set[tuple[str, str]] = set()  # terminal jobs whose worker is gone: nothing left to watch

    def folder(self, region: str, name: str) -> Path:
        raise NotImplementedError

    def observe(self, region: str, name: str) -> dict[str, Any]:
        raise NotImplementedError

    def stop(self, region: str, name: str) -> str:
        raise NotImplementedError

    def describe(self, region: str, record: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def summary(self, region: str, record: dict[str, Any]) -> dict[str, Any]:
        """The job as its List call summarises it."""
        status = self.observe(region, record[self.name_key])
        item = {
            self.name_key: record[self.name_key],
            self.arn_key: record[self.arn_key],
            "CreationTime": record["CreationTime"],
            "LastModifiedTime": status.get("LastModifiedTime", record["CreationTime"]),
            self.status_key: status[self.status_key],
        }
        item.update({k: status[k] for k in self.summary_fields if k in status})
        return item

    def records(self, region: str) -> RecordStore:
        return RecordStore(self.layout.resources(region, self.resource_type))

    def files(self, region: str, name: str) -> JobFiles:
        return JobFiles(self.folder(region, name))

    def start_worker(self, region: str, name: str) -> None:
        """Start the job's worker, recorded in its `worker.json` so that any server after this one watches it."""
        files = self.files(region, name)
        args = ["--root", str(self.layout.root), "--region", region, "--name", name]
        ref = self.spawn(self.worker_module, args, files.log)
        atomic_write_json(files.worker, {**ref.to_json(), "started": now()})
        log.info("%s %s (%s): worker pid %d started", self.noun, name, region, ref.pid)

    def unfinished(self) -> list[tuple[str, str]]:
        """(region, file key) of every job that is not known to be over, worker and all."""
        return [(region, key) for region in self.layout.regions() for key in self.records(region).names()
                if (region, key) not in self._finished]

    def counts(self) -> Counter[str]:
        totals: Counter[str] = Counter()
        for region in self.layout.regions():
            for record in self.records(region).all():
                totals[self.observe(region, record[self.name_key])[self.status_key]] += 1
        return totals

    def running(self) -> list[tuple[str, str]]:
        """(region, name) of the jobs whose worker has not finished."""
        found = []
        for region, key in self.unfinished():
            if self.observe(region, key)[self.status_key] in RUNNING:
                record = self.records(region).get(key)
                found.append((region, record[self.name_key] if record else key))
        return found

    async def stop_all(self) -> None:
        """Stop every running job and wait for the workers to go (the server's `stop --endpoints`)."""
        for region, name in self.running():
            self.stop(region, name)
            worker = ProcessRef.from_json(read_json(self.files(region, name).worker))
            if worker is not None:
                await supervisor.aterminate(worker, STOP_GRACE_S)
            self.observe(region, name)
