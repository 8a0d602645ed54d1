"""Training jobs on the server side: create the job's files, start its worker, observe it, stop it.

What a job is doing is read from its worker's `status.json` and whether that worker is still alive,
never from server memory; so a server restart loses nothing, and a worker that died without
finishing is reported Failed (or Stopped, if a stop was asked for).
"""

from __future__ import annotations

import logging
import signal
import time
from collections import Counter
from typing import Any

from jobman.backends.local import arns, describe_defaults, supervisor
from jobman.backends.local.store import Layout, RecordStore, atomic_write_json, read_json
from jobman.backends.local.supervisor import ProcessRef
from jobman.backends.local.training_state import TERMINAL, JobFiles, advance, finish, initial_status
from jobman.backends.local.wire import now
from jobman.images import is_builtin_xgboost

log = logging.getLogger("jobman.local.training")

WORKER_MODULE = "jobman.backends.local.training_worker"
STOP_GRACE_S = 10.0  # SIGKILL a worker that has not stopped this long after SIGTERM
MAX_RUNTIME_SLACK_S = 30.0  # backstop if a worker misses its own MaxRuntimeInSeconds alarm
# DescribeTrainingJob fields that are the create request's own, returned as given.
_FROM_REQUEST = (
    "TrainingJobName", "HyperParameters", "AlgorithmSpecification", "RoleArn", "InputDataConfig",
    "OutputDataConfig", "ResourceConfig", "VpcConfig", "StoppingCondition", "CheckpointConfig",
    "DebugHookConfig", "ExperimentConfig", "TensorBoardOutputConfig", "ProfilerConfig", "Environment",
    "RetryStrategy", "RemoteDebugConfig", "InfraCheckConfig",
)
_STATUS_FIELDS = (
    "TrainingJobStatus", "SecondaryStatus", "FailureReason", "ModelArtifacts", "TrainingStartTime",
    "TrainingEndTime", "LastModifiedTime", "SecondaryStatusTransitions", "FinalMetricDataList",
    "TrainingTimeInSeconds", "BillableTimeInSeconds",
)


class TrainingManager:
    def __init__(self, layout: Layout, spawn: supervisor.Spawner = supervisor.spawn_module) -> None:
        self.layout = layout
        self.spawn = spawn
        self._finished: set[tuple[str, str]] = set()  # terminal jobs: nothing left to watch

    def records(self, region: str) -> RecordStore:
        return RecordStore(self.layout.resources(region, arns.TRAINING_JOB))

    def files(self, region: str, name: str) -> JobFiles:
        return JobFiles(self.layout.training_dir(region, name))

    # --- create / start ---

    def create(self, region: str, request: dict[str, Any]) -> dict[str, Any]:
        name = request["TrainingJobName"]
        created = now()
        record = {**request, "TrainingJobArn": arns.arn(region, arns.TRAINING_JOB, name), "CreationTime": created}
        files = self.files(region, name)
        files.folder.mkdir(parents=True, exist_ok=True)
        for stale in (files.status, files.worker, files.stop, files.metrics):  # a job of the same name made before
            stale.unlink(missing_ok=True)
        files.write_status(initial_status(created))
        self.records(region).put(name, record)
        self._start(region, name)
        return record

    def _start(self, region: str, name: str) -> None:
        files = self.files(region, name)
        args = ["--root", str(self.layout.root), "--region", region, "--name", name]
        ref = self.spawn(WORKER_MODULE, args, files.log)
        atomic_write_json(files.worker, {**ref.to_json(), "started": now()})
        log.info("training job %s (%s): worker pid %d started", name, region, ref.pid)

    # --- observe ---

    def observe(self, region: str, name: str) -> dict[str, Any]:
        """The job's status as its worker reports it, settling the status of a worker that is gone."""
        files = self.files(region, name)
        status = files.read_status() or initial_status(now())
        if status["TrainingJobStatus"] in TERMINAL:
            self._finished.add((region, name.lower()))
            return status
        worker = ProcessRef.from_json(read_json(files.worker))
        stop = files.stop_request()
        if worker is not None and not supervisor.is_alive(worker):
            status = files.read_status() or status  # it may have finished between the two reads
            if status["TrainingJobStatus"] not in TERMINAL:
                status = self._settle_dead(files, status, worker, stop)
            return status
        if stop is not None and status.get("SecondaryStatus") != "Stopping":
            advance(status, "Stopping", "Stopping", stop.get("at", now()))  # shown, not written: the worker's file
        return status

    def _settle_dead(
        self, files: JobFiles, status: dict[str, Any], worker: ProcessRef, stop: dict[str, Any] | None
    ) -> dict[str, Any]:
        at = now()
        if stop is not None:
            finish(status, "Stopped", stop.get("secondary", "Stopped"), at)
        else:
            how = supervisor.exit_description(worker)
            finish(status, "Failed", "Failed", at,
                   f"AlgorithmError: the training process {how} before the job finished; see {files.log}")
        files.write_status(status)
        log.info("training job in %s: worker %d gone, job settled as %s", files.folder, worker.pid,
                 status["TrainingJobStatus"])
        return status

    def describe(self, region: str, record: dict[str, Any]) -> dict[str, Any]:
        status = self.observe(region, record["TrainingJobName"])
        echoed = {k: record[k] for k in _FROM_REQUEST if k in record}
        image = (record.get("AlgorithmSpecification") or {}).get("TrainingImage", "")
        answer = describe_defaults.training_job(echoed, is_builtin_xgboost(image))
        for flag in ("EnableNetworkIsolation", "EnableInterContainerTrafficEncryption", "EnableManagedSpotTraining"):
            answer[flag] = bool(record.get(flag, False))
        answer.update(TrainingJobArn=record["TrainingJobArn"], CreationTime=record["CreationTime"])
        answer.update({k: status[k] for k in _STATUS_FIELDS if k in status})
        return answer

    def summary(self, region: str, record: dict[str, Any]) -> dict[str, Any]:
        status = self.observe(region, record["TrainingJobName"])
        item = {
            "TrainingJobName": record["TrainingJobName"],
            "TrainingJobArn": record["TrainingJobArn"],
            "CreationTime": record["CreationTime"],
            "LastModifiedTime": status.get("LastModifiedTime", record["CreationTime"]),
            "TrainingJobStatus": status["TrainingJobStatus"],
            "SecondaryStatus": status.get("SecondaryStatus"),
        }
        if "TrainingEndTime" in status:
            item["TrainingEndTime"] = status["TrainingEndTime"]
        return item

    # --- stop ---

    def stop(self, region: str, name: str, secondary: str = "Stopped") -> str:
        """Ask the worker to stop (SIGTERM); returns the status the job had."""
        status = self.observe(region, name)["TrainingJobStatus"]
        if status != "InProgress":
            return status
        files = self.files(region, name)
        atomic_write_json(files.stop, {"at": now(), "secondary": secondary})
        worker = ProcessRef.from_json(read_json(files.worker))
        if worker is not None:
            supervisor.send_signal(worker, signal.SIGTERM)
        return status

    # --- supervision ---

    def tick(self) -> None:
        """Settle dead workers, restart ones lost before they started, enforce stop and runtime deadlines."""
        for region in self.layout.regions():
            records = self.records(region)
            for key in records.names():
                if (region, key) in self._finished:
                    continue
                record = records.get(key)
                if record is not None:
                    self._watch(region, record)

    def _watch(self, region: str, record: dict[str, Any]) -> None:
        name = record["TrainingJobName"]
        files = self.files(region, name)
        status = self.observe(region, name)
        if status["TrainingJobStatus"] in TERMINAL:
            return
        worker = ProcessRef.from_json(read_json(files.worker))
        if worker is None:  # the server died between recording the job and starting it
            self._start(region, name)
            return
        stop = files.stop_request()
        if stop is not None and time.time() - float(stop.get("at", 0)) > STOP_GRACE_S:
            supervisor.send_signal(worker, signal.SIGKILL)
            return
        limit = (record.get("StoppingCondition") or {}).get("MaxRuntimeInSeconds")
        started = status.get("TrainingStartTime") or record["CreationTime"]
        if isinstance(limit, int | float) and limit > 0 and time.time() - started > limit + MAX_RUNTIME_SLACK_S:
            self.stop(region, name, "MaxRuntimeExceeded")

    def counts(self) -> Counter[str]:
        totals: Counter[str] = Counter()
        for region in self.layout.regions():
            for record in self.records(region).all():
                totals[self.observe(region, record["TrainingJobName"])["TrainingJobStatus"]] += 1
        return totals

    def running(self) -> list[tuple[str, str]]:
        """(region, name) of the jobs whose worker has not finished."""
        found = []
        for region in self.layout.regions():
            records = self.records(region)
            for key in records.names():
                if (region, key) in self._finished:
                    continue
                if self.observe(region, key)["TrainingJobStatus"] in ("InProgress", "Stopping"):
                    record = records.get(key)
                    found.append((region, record["TrainingJobName"] if record else key))
        return found

    async def stop_all(self) -> None:
        """Stop every running job and wait for the workers to go (the server's `stop --endpoints`)."""
        for region, name in self.running():
            self.stop(region, name)
            worker = ProcessRef.from_json(read_json(self.files(region, name).worker))
            if worker is not None:
                await supervisor.aterminate(worker, STOP_GRACE_S)
            self.observe(region, name)

