"""Batch Transform jobs on the server side: record the job, start its worker, observe it, stop it.

As for training jobs (see training.py), what a job is doing is read from its worker's `status.json` and
whether that worker still lives, never from server memory: a server restart loses nothing, and a worker
that died without finishing is reported Failed (or Stopped, if a stop was asked for).
"""

from __future__ import annotations

import logging
import signal
import time
from pathlib import Path
from typing import Any

from jobman.backends.local import arns, describe_defaults, supervisor
from jobman.backends.local.job_manager import STOP_GRACE_S, JobManager
from jobman.backends.local.store import atomic_write_json, read_json
from jobman.backends.local.supervisor import ProcessRef
from jobman.backends.local.transform_state import TERMINAL, JobFiles, finish, initial_status, stopping
from jobman.backends.local.wire import now

log = logging.getLogger("jobman.local.transforms")

WORKER_MODULE = "jobman.backends.local.transform_worker"
# DescribeTransformJob fields that are the create request's own (with the defaults filled in at create).
_FROM_REQUEST = (
    "TransformJobName", "ModelName", "MaxConcurrentTransforms", "ModelClientConfig", "MaxPayloadInMB",
    "BatchStrategy", "Environment", "TransformInput", "TransformOutput", "DataCaptureConfig",
    "TransformResources", "DataProcessing", "ExperimentConfig",
)
_STATUS_FIELDS = ("TransformJobStatus", "FailureReason", "TransformStartTime", "TransformEndTime")


class TransformManager(JobManager):
    resource_type, name_key, status_key = arns.TRANSFORM_JOB, "TransformJobName", "TransformJobStatus"
    arn_key, summary_fields = "TransformJobArn", ("TransformEndTime", "FailureReason")
    worker_module, noun = WORKER_MODULE, "transform job"

    def folder(self, region: str, name: str) -> Path:
        return self.layout.transform_dir(region, name)

    # --- create / start ---

    def create(self, region: str, request: dict[str, Any], container: dict[str, Any]) -> dict[str, Any]:
        """Record the job with the model's container as it is now (a later DeleteModel does not affect it)."""
        name = request["TransformJobName"]
        created = now()
        record = {
            **request, "TransformJobArn": arns.arn(region, arns.TRANSFORM_JOB, name), "CreationTime": created,
            "Container": {k: container.get(k) for k in ("Image", "ModelDataUrl", "Environment")},
        }
        files = self.files(region, name)
        files.folder.mkdir(parents=True, exist_ok=True)
        for stale in (files.status, files.worker, files.stop):  # a job of the same name made before
            stale.unlink(missing_ok=True)
        files.write_status(initial_status(created))
        self.records(region).put(name, record)
        self._finished.discard((region, name.lower()))
        self.start_worker(region, name)
        return record

    # --- observe ---

    def observe(self, region: str, name: str) -> dict[str, Any]:
        """The job's status as its worker reports it, settling the status of a worker that is gone."""
        files = self.files(region, name)
        status = files.read_status() or initial_status(now())
        if status["TransformJobStatus"] in TERMINAL:
            self._finished.add((region, name.lower()))
            return status
        worker = ProcessRef.from_json(read_json(files.worker))
        stop = files.stop_request()
        if worker is not None and not supervisor.is_alive(worker):
            status = files.read_status() or status  # it may have finished between the two reads
            if status["TransformJobStatus"] not in TERMINAL:
                status = self._settle_dead(files, status, worker, stop)
            return status
        if stop is not None and status["TransformJobStatus"] == "InProgress":
            stopping(status, stop.get("at", now()))  # shown, not written: the file is the worker's
        return status

    def _settle_dead(
        self, files: JobFiles, status: dict[str, Any], worker: ProcessRef, stop: dict[str, Any] | None
    ) -> dict[str, Any]:
        if stop is not None:
            finish(status, "Stopped", now())
        else:
            how = supervisor.exit_description(worker)
            finish(status, "Failed", now(), f"AlgorithmError: the transform process {how} before the job "
                                            f"finished; see {files.log}")
        files.write_status(status)
        log.info("transform job in %s: worker %d gone, job settled as %s", files.folder, worker.pid,
                 status["TransformJobStatus"])
        return status

    def describe(self, region: str, record: dict[str, Any]) -> dict[str, Any]:
        status = self.observe(region, record["TransformJobName"])
        answer = describe_defaults.transform_job({k: record[k] for k in _FROM_REQUEST if k in record})
        answer.update(TransformJobArn=record["TransformJobArn"], CreationTime=record["CreationTime"])
        answer.update({k: status[k] for k in _STATUS_FIELDS if k in status})
        return answer

    # --- stop ---

    def stop(self, region: str, name: str) -> str:
        """Ask the worker to stop (SIGTERM); returns the status the job had."""
        status = self.observe(region, name)["TransformJobStatus"]
        if status != "InProgress":
            return status
        files = self.files(region, name)
        atomic_write_json(files.stop, {"at": now()})
        worker = ProcessRef.from_json(read_json(files.worker))
        if worker is not None:
            supervisor.send_signal(worker, signal.SIGTERM)
        return status

    # --- supervision ---

    def tick(self) -> None:
        """Settle dead workers, start ones lost before they started, enforce the stop grace."""
        for region, key in self.unfinished():
            record = self.records(region).get(key)
            if record is not None:
                self._watch(region, record)

    def _watch(self, region: str, record: dict[str, Any]) -> None:
        name = record["TransformJobName"]
        files = self.files(region, name)
        if self.observe(region, name)["TransformJobStatus"] in TERMINAL:
            return
        worker = ProcessRef.from_json(read_json(files.worker))
        if worker is None:  # the server died between recording the job and starting it
            self.start_worker(region, name)
            return
        stop = files.stop_request()
        if stop is not None and time.time() - float(stop.get("at", 0)) > STOP_GRACE_S:
            supervisor.send_signal(worker, signal.SIGKILL)
