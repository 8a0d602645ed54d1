"""Endpoints on the server side: start each one's serving process, watch it, replace it, delete it.

An endpoint is Creating until its process answers `/ping`, then InService. A process that dies (or
stops answering) while InService is replaced, as SageMaker replaces an unhealthy instance, and the
replacement is logged in the endpoint's log group and the server's log. Processes are detached: they
outlive the server, and a restarted server adopts those still alive and answering.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import shutil
import signal
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from jobman.backends.local import arns, shared_secret, supervisor
from jobman.backends.local.logstore import ENDPOINT_GROUP_PREFIX, LogStore
from jobman.backends.local.store import Layout, RecordStore, atomic_write_json, read_json
from jobman.backends.local.supervisor import ProcessRef
from jobman.backends.local.wire import ACCOUNT_ID, AwsError, now

log = logging.getLogger("jobman.local.endpoints")

WORKER_MODULE = "jobman.backends.local.endpoint_worker"
SERVING = frozenset({"Creating", "InService", "Updating"})
PING_INTERVAL_S = 2.0
PING_TIMEOUT_S = 2.0
UNHEALTHY_PINGS = 5  # consecutive failed pings before an InService instance is replaced
STARTUP_TIMEOUT_S = 300.0
STARTUP_ATTEMPTS = 3
QUICK_CRASH_S = 10.0  # an instance that dies sooner than this is restarted with growing delays

_DESCRIBE_FIELDS = ("EndpointName", "EndpointArn", "EndpointConfigName", "EndpointStatus", "CreationTime",
                    "LastModifiedTime", "FailureReason")


@dataclass
class Instance:
    """The running process of one endpoint (one instance of its one production variant)."""

    ref: ProcessRef
    instance_id: str
    started: float
    port: int | None = None
    failed_pings: int = 0
    last_ping: float = 0.0
    crashes: int = 0
    restart_at: float | None = None


def _key(region: str, name: str) -> tuple[str, str]:
    return region, name.lower()


def log_group(name: str) -> str:
    return ENDPOINT_GROUP_PREFIX + name


class EndpointManager:
    def __init__(self, layout: Layout, spawn: supervisor.Spawner = supervisor.spawn_module) -> None:
        self.layout = layout
        self.spawn = spawn
        self.instances: dict[tuple[str, str], Instance] = {}
        self.ready: dict[tuple[str, str], asyncio.Event] = {}
        self.session: aiohttp.ClientSession | None = None  # set by the server; pings and invocations share it
        self.secret = ""  # set by the server; workers refuse requests without it (see shared_secret.py)
        self._tasks: set[asyncio.Task[None]] = set()

    def records(self, region: str, rtype: str = arns.ENDPOINT) -> RecordStore:
        return RecordStore(self.layout.resources(region, rtype))

    def _event(self, key: tuple[str, str]) -> asyncio.Event:
        return self.ready.setdefault(key, asyncio.Event())

    # --- create ---

    def create(self, region: str, request: dict[str, Any]) -> dict[str, Any]:
        name, config_name = request["EndpointName"], request["EndpointConfigName"]
        endpoint_arn = arns.arn(region, arns.ENDPOINT, name)
        if self.records(region).get(name) is not None:
            raise AwsError("ValidationException", f'Cannot create already existing endpoint "{endpoint_arn}".')
        config = self.records(region, arns.ENDPOINT_CONFIG).get(config_name)
        if config is None:
            config_arn = arns.arn(region, arns.ENDPOINT_CONFIG, config_name)
            raise AwsError("ValidationException", f'Could not find endpoint configuration "{config_arn}".')
        variants = config.get("ProductionVariants") or []
        if len(variants) != 1:
            raise AwsError("ValidationException",
                           "The local backend serves endpoint configs with exactly one production variant.")
        model = self.records(region, arns.MODEL).get(variants[0]["ModelName"])
        if model is None:
            model_arn = arns.arn(region, arns.MODEL, variants[0]["ModelName"])
            raise AwsError("ValidationException", f'Could not find model "{model_arn}".')
        container = model.get("PrimaryContainer") or (model.get("Containers") or [{}])[0]
        created = now()
        record = {
            "EndpointName": name,
            "EndpointArn": endpoint_arn,
            "EndpointConfigName": config["EndpointConfigName"],
            "EndpointStatus": "Creating",
            "CreationTime": created,
            "LastModifiedTime": created,
            "Tags": list(request.get("Tags") or []),
            # What was deployed: the endpoint keeps serving it even if the config or model is deleted.
            "Deployed": {"Variant": variants[0], "Container": container},
        }
        self.records(region).put(name, record)
        self._launch(region, record)
        return record

    def _launch(self, region: str, record: dict[str, Any], *, notice: str | None = None, crashes: int = 0) -> None:
        name = record["EndpointName"]
        folder = self.layout.endpoint_dir(region, name)
        folder.mkdir(parents=True, exist_ok=True)
        for stale in ("port.json", "failed.json"):
            (folder / stale).unlink(missing_ok=True)
        deployed = record["Deployed"]
        variant = deployed["Variant"]["VariantName"]
        container = deployed["Container"]
        atomic_write_json(folder / "spec.json", {
            "EndpointName": name, "Region": region, "VariantName": variant, "LogGroup": log_group(name),
            "Image": container.get("Image", ""), "ModelDataUrl": container.get("ModelDataUrl"),
            "Environment": container.get("Environment") or {},
        })
        instance_id = "i-" + secrets.token_hex(9)[:17]
        logs = LogStore(self.layout.logs / region)
        logs.create_stream(log_group(name), f"{variant}/{instance_id}")
        if notice:
            logs.append(log_group(name), f"{variant}/{instance_id}", [notice])
        ref = self.spawn(WORKER_MODULE, ["--root", str(self.layout.root), "--dir", str(folder),
                                         "--instance", instance_id], folder / "worker.log")
        started = now()
        atomic_write_json(folder / "worker.json", {**ref.to_json(), "instance": instance_id, "started": started})
        self.instances[_key(region, name)] = Instance(ref, instance_id, started, crashes=crashes)
        self._event(_key(region, name)).clear()
        log.info("endpoint %s (%s): instance %s, pid %d%s", name, region, instance_id, ref.pid,
                 f": {notice}" if notice else "")

    # --- server start: adopt what still runs ---

    async def start(self) -> None:
        for region in self.layout.regions():
            for record in list(self.records(region).all()):
                status = record.get("EndpointStatus")
                if status == "Deleting":
                    self._delete_later(region, record["EndpointName"], None)
                elif status in SERVING:
                    await self._adopt(region, record)

    async def _adopt(self, region: str, record: dict[str, Any]) -> None:
        name = record["EndpointName"]
        folder = self.layout.endpoint_dir(region, name)
        worker = read_json(folder / "worker.json") or {}
        ref = ProcessRef.from_json(worker)
        if ref is not None and supervisor.is_alive(ref):
            instance = Instance(ref, worker.get("instance", "?"), float(worker.get("started", now())))
            instance.port = self._port(folder, ref)
            if instance.port is None and record["EndpointStatus"] == "Creating":
                self.instances[_key(region, name)] = instance  # still starting: the next tick decides
                return
            if instance.port is not None and await self._ping(instance):
                self.instances[_key(region, name)] = instance
                self._event(_key(region, name)).set()
                log.info("endpoint %s (%s): adopted running instance %s (pid %d, port %d)",
                         name, region, instance.instance_id, ref.pid, instance.port)
                return
            await supervisor.aterminate(ref, 2.0)
            if not self._serving(region, name):
                return  # deleted meanwhile
        self._launch(region, record, notice="The local server restarted and found no live instance: starting one.")

    # --- supervision ---

    async def tick(self) -> None:
        supervisor.reap()
        checks = []
        for region in self.layout.regions():
            for record in self.records(region).all():
                if record.get("EndpointStatus") not in SERVING:
                    continue
                instance = self.instances.get(_key(region, record["EndpointName"]))
                if instance is None:
                    self._launch(region, record)
                else:
                    checks.append(self._check(region, record, instance))
        await asyncio.gather(*checks)

    async def _check(self, region: str, record: dict[str, Any], instance: Instance) -> None:
        name, status = record["EndpointName"], record["EndpointStatus"]
        folder = self.layout.endpoint_dir(region, name)
        failed = read_json(folder / "failed.json")
        if isinstance(failed, dict) and failed.get("instance") == instance.instance_id:
            self._fail(region, name, str(failed.get("reason")))
            return
        if not supervisor.is_alive(instance.ref):
            self._replace_dead(region, record, instance)
            return
        if instance.port is None:
            instance.port = self._port(folder, instance.ref)
            if instance.port is None:
                if status == "Creating" and now() - instance.started > STARTUP_TIMEOUT_S:
                    await supervisor.aterminate(instance.ref, 2.0)
                    self._fail(region, name, f"The serving process did not start within {STARTUP_TIMEOUT_S:.0f} s.")
                return
        if status != "Creating" and time.monotonic() - instance.last_ping < PING_INTERVAL_S:
            return
        healthy = await self._ping(instance)
        instance.last_ping = time.monotonic()
        current = self.records(region).get(name)
        replaced = self.instances.get(_key(region, name)) is not instance
        if current is None or current["EndpointStatus"] not in SERVING or replaced:
            return  # deleted or replaced while we were pinging
        if healthy:
            instance.failed_pings = 0
            if current["EndpointStatus"] == "Creating":
                self._set_status(region, name, "InService")
                self._log(region, name, instance, "Endpoint is in service.")
            self._event(_key(region, name)).set()
            return
        instance.failed_pings += 1
        if current["EndpointStatus"] == "InService" and instance.failed_pings >= UNHEALTHY_PINGS:
            message = (f"Instance {instance.instance_id} failed {instance.failed_pings} health checks (/ping): "
                       "replacing it.")
            self._log(region, name, instance, message)
            self._event(_key(region, name)).clear()
            await supervisor.aterminate(instance.ref, 2.0)
            if self._serving(region, name):
                self._launch(region, current, notice=message)

    def _replace_dead(self, region: str, record: dict[str, Any], instance: Instance) -> None:
        name = record["EndpointName"]
        how = supervisor.exit_description(instance.ref)
        self._event(_key(region, name)).clear()
        if record["EndpointStatus"] == "Creating":
            if instance.crashes + 1 >= STARTUP_ATTEMPTS:
                log_path = self.layout.endpoint_dir(region, name) / "worker.log"
                self._fail(region, name, f"The serving process {how} during startup {STARTUP_ATTEMPTS} times; "
                                         f"see {log_path}.")
            else:
                self._launch(region, record, crashes=instance.crashes + 1,
                             notice=f"Startup attempt {instance.crashes + 1} failed (the process {how}): retrying.")
            return
        if instance.restart_at is None:
            quick = now() - instance.started < QUICK_CRASH_S
            instance.crashes = instance.crashes + 1 if quick else 1
            delay = 0.0 if instance.crashes == 1 else min(30.0, 2.0 ** (instance.crashes - 1))
            instance.restart_at = time.monotonic() + delay
            message = (f"Instance {instance.instance_id} (pid {instance.ref.pid}) {how}: replacing it"
                       + (f" in {delay:.0f} s." if delay else "."))
            self._log(region, name, instance, message)
            log.warning("endpoint %s (%s): %s", name, region, message)
        if time.monotonic() >= instance.restart_at:
            self._launch(region, record, crashes=instance.crashes,
                         notice=f"Replacing instance {instance.instance_id}, whose process {how}.")

    def _port(self, folder: Path, ref: ProcessRef) -> int | None:
        reported = read_json(folder / "port.json")
        if isinstance(reported, dict) and reported.get("pid") == ref.pid and isinstance(reported.get("port"), int):
            return int(reported["port"])
        return None

    async def _ping(self, instance: Instance) -> bool:
        if self.session is None or instance.port is None:
            return False
        try:
            async with self.session.get(
                f"http://127.0.0.1:{instance.port}/ping", headers=self.worker_headers(),
                timeout=aiohttp.ClientTimeout(total=PING_TIMEOUT_S),
            ) as response:
                return response.status == 200
        except (aiohttp.ClientError, TimeoutError, OSError):
            return False

    def worker_headers(self) -> dict[str, str]:
        """What every request to a worker's port carries: it serves only holders of the secret."""
        return {shared_secret.HEADER: self.secret}

    def _serving(self, region: str, name: str) -> bool:
        record = self.records(region).get(name)
        return record is not None and record.get("EndpointStatus") in SERVING

    def _set_status(self, region: str, name: str, status: str, reason: str | None = None) -> None:
        record = self.records(region).get(name)
        if record is None or record.get("EndpointStatus") == "Deleting":
            return  # a deletion in flight has the last word
        record.update(EndpointStatus=status, LastModifiedTime=now())
        if reason:
            record["FailureReason"] = reason
        self.records(region).put(name, record)

    def _fail(self, region: str, name: str, reason: str) -> None:
        instance = self.instances.pop(_key(region, name), None)
        if instance is not None:
            supervisor.send_signal(instance.ref, signal.SIGTERM)
        self._set_status(region, name, "Failed", reason)
        log.warning("endpoint %s (%s) failed: %s", name, region, reason)

    def _log(self, region: str, name: str, instance: Instance, message: str) -> None:
        variant = (self.records(region).get(name) or {}).get("Deployed", {}).get("Variant", {}).get("VariantName")
        LogStore(self.layout.logs / region).append(log_group(name), f"{variant}/{instance.instance_id}", [message])

    # --- data plane routing ---

    async def serving_instance(self, region: str, name: str, wait_s: float) -> tuple[Instance, str]:
        """The instance to send an invocation to, and its variant name; waits out a replacement."""
        record = self.records(region).get(name)
        if record is None:
            raise AwsError("ValidationError", f"Endpoint {name} of account {ACCOUNT_ID} not found.")
        if record["EndpointStatus"] != "InService":
            status = record["EndpointStatus"]
            raise AwsError("ValidationError", f"Endpoint {name} of account {ACCOUNT_ID} is not in service ({status}).")
        key = _key(region, name)
        try:
            await asyncio.wait_for(self._event(key).wait(), wait_s)
        except TimeoutError:
            raise AwsError("ServiceUnavailable", f"Endpoint {name} has no healthy instance right now; retry.",
                           503) from None
        instance = self.instances.get(key)
        if instance is None or instance.port is None:
            raise AwsError("ServiceUnavailable", f"Endpoint {name} has no healthy instance right now; retry.", 503)
        return instance, record["Deployed"]["Variant"]["VariantName"]

    def unreachable(self, region: str, name: str, instance: Instance) -> None:
        """The proxy could not reach the instance: stop routing to it until the supervisor has looked."""
        if self.instances.get(_key(region, name)) is instance and not supervisor.is_alive(instance.ref):
            self._event(_key(region, name)).clear()

    # --- delete and shutdown ---

    def delete(self, region: str, name: str) -> None:
        record = self.records(region).get(name)
        if record is None:
            raise AwsError("ValidationException", f'Could not find endpoint "{arns.arn(region, arns.ENDPOINT, name)}".')
        if record["EndpointStatus"] == "Deleting":
            return
        record.update(EndpointStatus="Deleting", LastModifiedTime=now())
        self.records(region).put(name, record)
        instance = self.instances.pop(_key(region, name), None)
        self.ready.pop(_key(region, name), None)
        self._delete_later(region, name, instance.ref if instance else None)

    def _delete_later(self, region: str, name: str, ref: ProcessRef | None) -> None:
        task = asyncio.get_running_loop().create_task(self._finish_delete(region, name, ref))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _finish_delete(self, region: str, name: str, ref: ProcessRef | None) -> None:
        folder = self.layout.endpoint_dir(region, name)
        ref = ref or ProcessRef.from_json(read_json(folder / "worker.json"))
        try:
            if ref is not None:
                await supervisor.aterminate(ref, 5.0)
            await asyncio.to_thread(shutil.rmtree, folder, True)
        finally:
            self.records(region).delete(name)
            log.info("endpoint %s (%s) deleted", name, region)

    async def drain(self) -> None:
        """Let deletions in flight finish (server shutdown)."""
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def stop_all(self) -> None:
        """Stop every serving process; their endpoints become OutOfService and are not restarted."""
        for instance in list(self.instances.values()):
            await supervisor.aterminate(instance.ref, 5.0)
        for region in self.layout.regions():
            for record in self.records(region).all():
                if record.get("EndpointStatus") in SERVING:
                    self._set_status(region, record["EndpointName"], "OutOfService")
        self.instances.clear()

    # --- reporting ---

    def describe(self, record: dict[str, Any]) -> dict[str, Any]:
        answer: dict[str, Any] = {k: record[k] for k in _DESCRIBE_FIELDS if k in record}
        if record["EndpointStatus"] in ("InService", "Updating", "OutOfService"):
            answer["ProductionVariants"] = [_variant_summary(record)]
        return answer

    def counts(self) -> Counter[str]:
        regions = self.layout.regions()
        return Counter(r.get("EndpointStatus", "?") for region in regions for r in self.records(region).all())

    def processes(self) -> list[dict[str, Any]]:
        rows = []
        for region in self.layout.regions():
            for record in self.records(region).all():
                instance = self.instances.get(_key(region, record["EndpointName"]))
                rows.append({
                    "name": record["EndpointName"], "region": region, "status": record["EndpointStatus"],
                    "pid": instance.ref.pid if instance else None, "port": instance.port if instance else None,
                    "instance": instance.instance_id if instance else None,
                })
        return rows


def _variant_summary(record: dict[str, Any]) -> dict[str, Any]:
    variant, container = record["Deployed"]["Variant"], record["Deployed"]["Container"]
    weight = float(variant.get("InitialVariantWeight", 1.0))
    count = int(variant.get("InitialInstanceCount", 1))
    image = container.get("Image", "")
    return {
        "VariantName": variant["VariantName"],
        "DeployedImages": [{"SpecifiedImage": image, "ResolvedImage": image, "ResolutionTime": record["CreationTime"]}],
        "CurrentWeight": weight,
        "DesiredWeight": weight,
        "CurrentInstanceCount": count if record["EndpointStatus"] == "InService" else 0,
        "DesiredInstanceCount": count,
    }
