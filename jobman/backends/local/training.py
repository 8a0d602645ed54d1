"""Training jobs on the server side: create the job's files, start its worker, observe it, stop it.

What a job is doing is read from its worker's `status.json` and whether that worker is still alive,
never from server memory; so a server restart loses nothing, and a worker that died without
finishing is reported Failed (or Stopped, if a stop was asked for).

At most `max_training` workers live at once (see capacity.py): a job created while every slot is busy
waits as SageMaker's do while instances are provisioned (InProgress / Starting, no `worker.json` yet)
and starts, oldest first, when a slot frees: on the supervision tick, or sooner on a Create, Describe
or List.
"""

from __future__ import annotations

import logging
import signal
import time
from pathlib import Path
from typing import Any

from jobman.backends.local import arns, capacity, describe_defaults, supervisor
from jobman.backends.local.job_manager import STOP_GRACE_S, JobManager
from jobman.backends.local.store import Layout, atomic_write_json, read_json
from jobman.backends.local.supervisor import ProcessRef
from jobman.backends.local.training_state import (
    TERMINAL,
    JobFiles,
    advance,
    finish,
    initial_status,
    set_starting_message,
)
from jobman.backends.local.wire import now
from jobman.images import is_builtin_xgboost

log = logging.getLogger("jobman.local.training")

WORKER_MODULE = "jobman.backends.local.training_worker"
MAX_RUNTIME_SLACK_S = 30.0  # backstop if a worker misses its own MaxRuntimeInSeconds alarm
QUEUE_KEY = "JobmanQueuedNs"  # in the job's record (never echoed): creation order to the nanosecond, for FIFO
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


class TrainingManager(JobManager):
    resource_type, name_key, status_key = arns.TRAINING_JOB, "TrainingJobName", "TrainingJobStatus"
    arn_key, summary_fields = "TrainingJobArn", ("SecondaryStatus", "TrainingEndTime")
    worker_module, noun = WORKER_MODULE, "training job"

    def __init__(self, layout: Layout, spawn: supervisor.Spawner = supervisor.spawn_module,
                 max_training: int | None = None) -> None:
        super().__init__(layout, spawn)
        # Read once, at construction, so that a bad value stops the server before it serves anything.
        self.max_training = capacity.max_training() if max_training is None else max_training

    def folder(self, region: str, name: str) -> Path:
        return self.layout.training_dir(region, name)

    # --- create / start ---

    def create(self, region: str, request: dict[str, Any]) -> dict[str, Any]:
        name = request["TrainingJobName"]
        created = now()
        record = {**request, "TrainingJobArn": arns.arn(region, arns.TRAINING_JOB, name), "CreationTime": created,
                  QUEUE_KEY: time.time_ns()}
        files = self.files(region, name)
        files.folder.mkdir(parents=True, exist_ok=True)
        for stale in (files.status, files.worker, files.stop, files.metrics):  # a job of the same name made before
            stale.unlink(missing_ok=True)
        files.write_status(initial_status(created))
        self._finished.discard((region, name.lower()))
        self.records(region).put(name, record)  # from here on the job waits for a slot (no worker.json yet)
        self.start_waiting()
        return record

    def start_waiting(self) -> int:
        """Start waiting jobs, oldest first, while fewer than `max_training` workers live; returns how many."""
        with capacity.start_lock(self.layout):
            busy, waiting = 0, []
            for region, key in self.unfinished():
                files = self.files(region, key)
                worker = ProcessRef.from_json(read_json(files.worker))
                if worker is not None:  # started: it holds a slot for as long as its process lives
                    busy += supervisor.is_alive(worker)
                    continue
                status = files.read_status()
                if status is not None and status["TrainingJobStatus"] in TERMINAL:
                    continue
                stop = files.stop_request()
                if stop is not None:  # a stop that did not get to settle the job (its server died): settle it
                    self._settle_unstarted(files, stop.get("secondary", "Stopped"))
                    continue
                record = self.records(region).get(key)
                if record is not None:
                    order = record.get(QUEUE_KEY) or int(float(record["CreationTime"]) * 1e9)
                    waiting.append(capacity.Waiting(int(order), region, record["TrainingJobName"]))
            chosen = capacity.to_start(waiting, busy, self.max_training)
            for job in chosen:
                self._start(job.region, job.name)
            for job in waiting:
                if job not in chosen:
                    self._show_waiting(job.region, job.name)
        return len(chosen)

    def _show_waiting(self, region: str, name: str) -> None:
        """Say in the Starting transition why the job has not started (the server's file until a worker runs)."""
        files = self.files(region, name)
        status = files.read_status() or initial_status(now())
        message = (f"Preparing the instances for training: waiting for capacity (all {self.max_training} "
                   f"training slots of {capacity.ENV} are busy)")
        if set_starting_message(status, message):
            files.write_status(status)

    def _start(self, region: str, name: str) -> None:
        """Start the job's worker; the caller holds `capacity.start_lock`."""
        files = self.files(region, name)
        status = files.read_status() or initial_status(now())
        if set_starting_message(status, None):  # no longer waiting: the plain message, before the worker owns it
            files.write_status(status)
        self.start_worker(region, name)

    # --- observe ---

    def observe(self, region: str, name: str) -> dict[str, Any]:
        """The job's status as its worker reports it, settling the status of a worker that is gone."""
        files = self.files(region, name)
        status = files.read_status() or initial_status(now())
        worker = ProcessRef.from_json(read_json(files.worker))
        if status["TrainingJobStatus"] in TERMINAL:
            if worker is None or not supervisor.is_alive(worker):  # a live worker still holds its slot
                self._finished.add((region, name.lower()))
            return status
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
        self.start_waiting()  # a slot freed since the last tick goes to the oldest waiting job now
        status = self.observe(region, record["TrainingJobName"])
        echoed = {k: record[k] for k in _FROM_REQUEST if k in record}
        image = (record.get("AlgorithmSpecification") or {}).get("TrainingImage", "")
        answer = describe_defaults.training_job(echoed, is_builtin_xgboost(image))
        for flag in ("EnableNetworkIsolation", "EnableInterContainerTrafficEncryption", "EnableManagedSpotTraining"):
            answer[flag] = bool(record.get(flag, False))
        answer.update(TrainingJobArn=record["TrainingJobArn"], CreationTime=record["CreationTime"])
        answer.update({k: status[k] for k in _STATUS_FIELDS if k in status})
        return answer

    # --- stop ---

    def stop(self, region: str, name: str, secondary: str = "Stopped") -> str:
        """Ask the worker to stop (SIGTERM); returns the status the job had."""
        status = self.observe(region, name)["TrainingJobStatus"]
        if status != "InProgress":
            return status
        files = self.files(region, name)
        with capacity.start_lock(self.layout):  # so that no one starts the job while it is being stopped
            atomic_write_json(files.stop, {"at": now(), "secondary": secondary})
            worker = ProcessRef.from_json(read_json(files.worker))
            if worker is None:  # still waiting for a slot: it ends now, without ever starting a worker
                self._settle_unstarted(files, secondary)
                return status
        supervisor.send_signal(worker, signal.SIGTERM)
        return status

    @staticmethod
    def _settle_unstarted(files: JobFiles, secondary: str) -> None:
        """A waiting job that was asked to stop is Stopped, with no start time and nothing billed."""
        status = files.read_status() or initial_status(now())
        if status["TrainingJobStatus"] not in TERMINAL:
            finish(status, "Stopped", secondary, now())
            files.write_status(status)

    # --- supervision ---

    def tick(self) -> None:
        """Settle dead workers, enforce stop and runtime deadlines, then give free slots to waiting jobs
        (which also starts a job whose server died between recording it and starting its worker)."""
        for region, key in self.unfinished():
            record = self.records(region).get(key)
            if record is not None:
                self._watch(region, record)
        self.start_waiting()

    def _watch(self, region: str, record: dict[str, Any]) -> None:
        name = record["TrainingJobName"]
        files = self.files(region, name)
        status = self.observe(region, name)
        if status["TrainingJobStatus"] in TERMINAL:
            return
        worker = ProcessRef.from_json(read_json(files.worker))
        if worker is None:  # waiting for a slot: `start_waiting` starts it, no deadline runs yet
            return
        stop = files.stop_request()
        if stop is not None and time.time() - float(stop.get("at", 0)) > STOP_GRACE_S:
            supervisor.send_signal(worker, signal.SIGKILL)
            return
        limit = (record.get("StoppingCondition") or {}).get("MaxRuntimeInSeconds")
        # From the real start, never from creation: waiting for a slot uses none of the job's runtime.
        started = status.get("TrainingStartTime") or (read_json(files.worker) or {}).get("started") or time.time()
        if isinstance(limit, int | float) and limit > 0 and time.time() - started > limit + MAX_RUNTIME_SLACK_S:
            self.stop(region, name, "MaxRuntimeExceeded")

