"""The aioboto3 backend: real SageMaker, moto's server, or jobman's local server, by endpoint URL.

One session, one client per service kept open for the backend's life. botocore's `standard` retry
mode handles transient faults; on top of it, control-plane calls back off with jitter when AWS
still says ThrottlingException, pass a rate limiter, and are bounded by a semaphore.
Invocations are not retried here: the invoker owns their retries (one policy, one count).
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from datetime import datetime
from typing import Any

import aioboto3
import aiohttp
from aiobotocore.config import AioConfig
from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

from jobman.backoff import Backoff, RateLimiter, retry
from jobman.errors import BackendError, InvokeError, ResourceInUse, ResourceNotFound
from jobman.kinds import KIND_API, Kind

TRAINING_LOG_GROUP = "/aws/sagemaker/TrainingJobs"
THROTTLING = frozenset({
    "ThrottlingException", "Throttling", "ThrottledException", "TooManyRequestsException",
    "RequestLimitExceeded", "SlowDown",
})
INVOKE_RETRYABLE = THROTTLING | {
    "ServiceUnavailable", "ModelNotReadyException", "InternalFailure", "InternalDependencyException",
}
# Refused, reset or timed-out connections (and their subclasses); not NoCredentialsError, ParamValidationError, …
TRANSIENT_BOTOCORE = (HTTPClientError, BotoConnectionError)
CONTROL_BACKOFF = Backoff(attempts=5, base_s=0.5, cap_s=20.0)  # after botocore's own retries
_NOT_FOUND_CODES = frozenset({"ResourceNotFound", "ResourceNotFoundException", "NoSuchEntity"})


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _http_status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)


def translate(exc: ClientError, what: str) -> BackendError:
    """SageMaker says "not found" and "already exists" in several ways; jobman has one word for each."""
    code, message = _error_code(exc), str(exc.response.get("Error", {}).get("Message", exc))
    lowered = message.lower()
    # "Could not find …" (models, configs, endpoints) and "Requested resource not found." (training jobs).
    not_found = "could not find" in lowered or "requested resource not found" in lowered
    if code in _NOT_FOUND_CODES or (code == "ValidationException" and not_found):
        return ResourceNotFound(f"{what}: {message}")
    if code in ("ResourceInUse", "ResourceInUseException") or (
        code == "ValidationException" and ("already exist" in lowered or "cannot create" in lowered)
    ):
        return ResourceInUse(f"{what}: {message}")
    retryable = code in THROTTLING or _http_status(exc) >= 500
    return BackendError(f"{what}: {code}: {message}", code=code, retryable=retryable)


def _transient(exc: BaseException) -> bool:
    """Connection trouble may pass; missing credentials or a bad parameter will not."""
    return not isinstance(exc, BotoCoreError) or isinstance(exc, TRANSIENT_BOTOCORE)


def _is_throttle(exc: BaseException) -> bool:
    return isinstance(exc, BackendError) and exc.retryable


class AwsBackend:
    """SageMaker-shaped backend over aioboto3; see `jobman.backends.base.Backend`."""

    def __init__(
        self,
        *,
        name: str = "sagemaker",
        region: str,
        profile: str | None = None,
        endpoint_url: str | None = None,
        credentials: dict[str, str] | None = None,
        control_concurrency: int = 16,
        control_rate_per_s: float = 40.0,
        invoke_pool: int = 256,  # the most requests in flight an experiment file allows
        backoff: Backoff = CONTROL_BACKOFF,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.name, self.region = name, region
        self._session = aioboto3.Session(profile_name=profile or None, region_name=region, **(credentials or {}))
        self._endpoint_url = endpoint_url
        self._control_config = AioConfig(
            retries={"mode": "standard", "total_max_attempts": 4},
            max_pool_connections=max(10, control_concurrency),
            connect_timeout=10, read_timeout=60,
        )
        self._invoke_config = AioConfig(
            retries={"mode": "standard", "total_max_attempts": 1},
            max_pool_connections=max(10, invoke_pool),
            connect_timeout=10, read_timeout=70,  # the container has 60 s to answer
        )
        self._stack = AsyncExitStack()
        self._clients: dict[str, Any] = {}
        self._client_lock = asyncio.Lock()
        # Each API family (sagemaker, s3, logs, sts) has its own AWS limits, so each gets its own bounds.
        self._bounds: dict[str, tuple[asyncio.Semaphore, RateLimiter]] = {}
        self._control_concurrency, self._control_rate_per_s = control_concurrency, control_rate_per_s
        self._backoff, self._sleep = backoff, sleep
        self.calls: Counter[str] = Counter()  # API calls made, by operation: what the benchmarks count

    async def _client(self, service: str) -> Any:
        async with self._client_lock:
            if service not in self._clients:
                config = self._invoke_config if service == "sagemaker-runtime" else self._control_config
                self._clients[service] = await self._stack.enter_async_context(
                    self._session.client(service, endpoint_url=self._endpoint_url, config=config)
                )
            return self._clients[service]

    async def aclose(self) -> None:
        await self._stack.aclose()
        self._clients.clear()

    def _bounds_for(self, service: str) -> tuple[asyncio.Semaphore, RateLimiter]:
        if service not in self._bounds:
            self._bounds[service] = (
                asyncio.Semaphore(self._control_concurrency),
                RateLimiter(self._control_rate_per_s, burst=self._control_concurrency, sleep=self._sleep),
            )
        return self._bounds[service]

    async def _call(self, service: str, operation: str, what: str, **params: Any) -> dict[str, Any]:
        client = await self._client(service)
        semaphore, limiter = self._bounds_for(service)

        async def once() -> dict[str, Any]:
            async with semaphore:
                await limiter.acquire()
                self.calls[operation] += 1
                try:
                    return await getattr(client, operation)(**params)  # type: ignore[no-any-return]
                except ClientError as exc:
                    raise translate(exc, what) from None
                except (BotoCoreError, aiohttp.ClientError, TimeoutError) as exc:
                    raise BackendError(f"{what}: {exc}", code=type(exc).__name__, retryable=_transient(exc)) from None

        return await retry(once, retryable=_is_throttle, policy=self._backoff, sleep=self._sleep)

    # identity and storage

    async def account_id(self) -> str:
        response = await self._call("sts", "get_caller_identity", "sts:GetCallerIdentity")
        return str(response["Account"])

    async def ensure_bucket(self, bucket: str) -> None:
        try:
            await self._call("s3", "head_bucket", f"s3://{bucket}", Bucket=bucket)
            return
        except BackendError as exc:
            if exc.code not in ("404", "NoSuchBucket", "NotFound"):
                raise
        params: dict[str, Any] = {"Bucket": bucket}
        if self.region != "us-east-1":
            params["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
        try:
            await self._call("s3", "create_bucket", f"s3://{bucket}", **params)
        except BackendError as exc:
            if exc.code != "BucketAlreadyOwnedByYou":
                raise

    async def upload_file(self, path: str, bucket: str, key: str) -> None:
        client = await self._client("s3")
        self.calls["upload_file"] += 1
        try:
            await client.upload_file(path, bucket, key)
        except ClientError as exc:
            raise translate(exc, f"s3://{bucket}/{key}") from None

    # control plane

    async def create(self, kind: Kind, request: dict[str, Any]) -> dict[str, Any]:
        api = KIND_API[kind]
        return await self._call("sagemaker", api.create, f"{kind.value} {request[api.name_key]}", **request)

    async def describe(self, kind: Kind, name: str) -> dict[str, Any]:
        api = KIND_API[kind]
        return await self._call("sagemaker", api.describe, f"{kind.value} {name}", **{api.name_key: name})

    async def list_summaries(
        self, kind: Kind, *, name_contains: str | None = None, created_after: datetime | None = None
    ) -> list[dict[str, Any]]:
        api = KIND_API[kind]
        params: dict[str, Any] = {"MaxResults": 100, "SortBy": "CreationTime", "SortOrder": "Ascending"}
        if name_contains:
            params["NameContains"] = name_contains
        if created_after is not None:
            params["CreationTimeAfter"] = created_after
        items: list[dict[str, Any]] = []
        while True:
            page = await self._call("sagemaker", api.list, f"list {kind.value}s", **params)
            items.extend(page.get(api.list_key, []))
            token = page.get("NextToken")
            if not token:
                return items
            params["NextToken"] = token

    async def delete(self, kind: Kind, name: str) -> None:
        api = KIND_API[kind]
        if api.delete is None:
            raise BackendError(f"{kind.value} {name}: SageMaker cannot delete this kind", code="Unsupported")
        await self._call("sagemaker", api.delete, f"delete {kind.value} {name}", **{api.name_key: name})

    async def stop_training_job(self, name: str) -> None:
        await self._call("sagemaker", "stop_training_job", f"stop training job {name}", TrainingJobName=name)

    async def list_tags(self, arn: str) -> dict[str, str]:
        tags: dict[str, str] = {}
        params: dict[str, Any] = {"ResourceArn": arn, "MaxResults": 100}
        while True:
            page = await self._call("sagemaker", "list_tags", f"tags of {arn}", **params)
            tags.update({t["Key"]: t["Value"] for t in page.get("Tags", [])})
            if not page.get("NextToken"):
                return tags
            params["NextToken"] = page["NextToken"]

    # logs

    async def training_log(self, job_name: str, cursor: str | None) -> tuple[list[str], str | None]:
        """New lines of the job's first log stream; the cursor is opaque JSON (stream and token)."""
        state = json.loads(cursor) if cursor else {}
        try:
            if "stream" not in state:
                streams = await self._call(
                    "logs", "describe_log_streams", f"log streams of {job_name}",
                    logGroupName=TRAINING_LOG_GROUP, logStreamNamePrefix=f"{job_name}/",
                )
                if not streams.get("logStreams"):
                    return [], cursor
                state["stream"] = streams["logStreams"][0]["logStreamName"]
            params: dict[str, Any] = {
                "logGroupName": TRAINING_LOG_GROUP, "logStreamName": state["stream"], "startFromHead": True,
            }
            if state.get("token"):
                params["nextToken"] = state["token"]
            page = await self._call("logs", "get_log_events", f"log of {job_name}", **params)
        except ResourceNotFound:
            return [], cursor
        state["token"] = page.get("nextForwardToken") or state.get("token")
        return [event["message"] for event in page.get("events", [])], json.dumps(state)

    # data plane

    async def invoke_endpoint(self, endpoint_name: str, body: bytes, content_type: str = "text/csv") -> bytes:
        client = await self._client("sagemaker-runtime")
        self.calls["invoke_endpoint"] += 1
        try:
            response = await client.invoke_endpoint(EndpointName=endpoint_name, Body=body, ContentType=content_type)
            async with response["Body"] as stream:
                return bytes(await stream.read())
        except ClientError as exc:
            code = _error_code(exc)
            message = exc.response.get("Error", {}).get("Message", str(exc))
            retryable = code in INVOKE_RETRYABLE or _http_status(exc) >= 500
            raise InvokeError(f"{code}: {message}", code=code, retryable=retryable) from None
        except (BotoCoreError, aiohttp.ClientError, TimeoutError, ConnectionError) as exc:
            retryable = _transient(exc)
            raise InvokeError(f"{type(exc).__name__}: {exc}", code=type(exc).__name__, retryable=retryable) from None
