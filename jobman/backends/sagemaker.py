"""The aioboto3 backend: real SageMaker, moto's server, or jobman's local server, by endpoint URL.

One session, one client per service kept open for the backend's life. botocore's `standard` retry
mode handles transient faults; on top of it, control-plane calls back off with jitter when AWS
still says ThrottlingException, pass a rate limiter, and are bounded by a semaphore. List calls
are walked by botocore's paginators, each page one such call.
Invocations are not retried here: the invoker owns their retries (one policy, one count).
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from datetime import datetime
from typing import Any

import aioboto3
import aiohttp
import botocore.session
from aiobotocore.config import AioConfig
from aiobotocore.paginate import AioPaginator
from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError, PaginationError
from botocore.exceptions import ConnectionError as BotoConnectionError

from jobman.backoff import Backoff, RateLimiter, retry
from jobman.durations import format_duration
from jobman.errors import BackendError, InvokeError, ResourceInUse, ResourceNotFound, Unreachable
from jobman.kinds import KIND_API, SCHEDULE_GROUP, Kind
from jobman.tags import TAG_MANAGED, tags_in_description

TRAINING_LOG_GROUP = "/aws/sagemaker/TrainingJobs"
THROTTLING = frozenset({
    "ThrottlingException", "Throttling", "ThrottledException", "TooManyRequestsException",
    "RequestLimitExceeded", "SlowDown",
})
INVOKE_RETRYABLE = THROTTLING | {
    "ServiceUnavailable", "ModelNotReadyException", "InternalFailure", "InternalDependencyException",
}
CONTROL_BACKOFF = Backoff(attempts=5, base_s=0.5, cap_s=20.0)  # after botocore's own retries
PAGE_SIZE = 100  # items a List page: SageMaker's and EventBridge Scheduler's largest
S3_DELETE_BATCH = 1000  # keys a DeleteObjects call takes at most
UNREACHABLE_BUDGET_S = 180.0  # connection failures this long in a row end the wait with Unreachable
_NOT_FOUND_CODES = frozenset({"ResourceNotFound", "ResourceNotFoundException", "NoSuchEntity"})
# The connection itself failed (refused, reset, timed out): the cloud may be gone, not the request wrong.
# Not NoCredentialsError, ParamValidationError, …: those will not pass by waiting.
CONNECTION_ERRORS = (HTTPClientError, BotoConnectionError, aiohttp.ClientConnectionError, ConnectionError, TimeoutError)
Reconnect = Callable[[], Awaitable[str]]


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
    if code in ("ResourceInUse", "ResourceInUseException", "ConflictException") or (
        code == "ValidationException" and ("already exist" in lowered or "cannot create" in lowered)
    ):
        return ResourceInUse(f"{what}: {message}")
    retryable = code in THROTTLING or _http_status(exc) >= 500
    return BackendError(f"{what}: {code}: {message}", code=code, retryable=retryable)


def _transient(exc: BaseException) -> bool:
    """Other transport trouble may pass; missing credentials or a bad parameter will not."""
    return not isinstance(exc, BotoCoreError)


def _is_throttle(exc: BaseException) -> bool:
    return isinstance(exc, BackendError) and exc.retryable


@functools.cache
def _pagination(service: str, api_version: str, operation: str) -> Any:
    """botocore's pagination rules for a List operation: its token names, limit key and result key."""
    return botocore.session.get_session().get_paginator_model(service, api_version).get_paginator(operation)


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
        control_attempts: int = 4,  # botocore's own tries per call, before jobman's backoff
        invoke_pool: int = 256,  # the most requests in flight an experiment file allows
        backoff: Backoff = CONTROL_BACKOFF,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        reconnect: Reconnect | None = None,
        unreachable_budget_s: float = UNREACHABLE_BUDGET_S,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name, self.region = name, region
        self._session = aioboto3.Session(profile_name=profile or None, region_name=region, **(credentials or {}))
        self._endpoint_url = endpoint_url
        self._control_config = AioConfig(
            retries={"mode": "standard", "total_max_attempts": control_attempts},
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
        # The local server may stop under a run: `reconnect` starts it again and says where it now listens.
        self._reconnect, self._reconnect_lock = reconnect, asyncio.Lock()
        self._unreachable_budget_s, self._monotonic = unreachable_budget_s, monotonic
        self._unreachable_since: float | None = None

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

    async def __aenter__(self) -> AwsBackend:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    @property
    def _where(self) -> str:
        return f"the local server at {self._endpoint_url}" if self.name == "local" else f"AWS in {self.region}"

    async def _connection_failed(self, exc: BaseException, what: str) -> BackendError:
        """A failed connection: restart the local server, or count it against the budget for being unreachable."""
        url = self._endpoint_url
        if self._reconnect is not None:
            async with self._reconnect_lock:
                if self._endpoint_url == url:  # nobody reconnected meanwhile
                    try:
                        new_url = await self._reconnect()
                    except BackendError as restart_error:
                        return Unreachable(f"{what}: the local server stopped and could not be started again: "
                                           f"{restart_error}")
                    if new_url != url:
                        await self._stack.aclose()  # clients are bound to the old port
                        self._clients.clear()
                        self._endpoint_url = new_url
            return BackendError(f"{what}: {exc}", code=type(exc).__name__, retryable=True)
        now = self._monotonic()
        if self._unreachable_since is None:
            self._unreachable_since = now
        elif now - self._unreachable_since > self._unreachable_budget_s:
            return Unreachable(f"{what}: cannot reach {self._where} for "
                               f"{format_duration(now - self._unreachable_since)}: {exc}")
        return BackendError(f"{what}: {exc}", code=type(exc).__name__, retryable=True)

    def _bounds_for(self, service: str) -> tuple[asyncio.Semaphore, RateLimiter]:
        if service not in self._bounds:
            self._bounds[service] = (
                asyncio.Semaphore(self._control_concurrency),
                RateLimiter(self._control_rate_per_s, burst=self._control_concurrency, sleep=self._sleep),
            )
        return self._bounds[service]

    async def _call(self, service: str, operation: str, what: str, **params: Any) -> dict[str, Any]:
        semaphore, limiter = self._bounds_for(service)

        async def once() -> dict[str, Any]:
            async with semaphore:
                await limiter.acquire()
                self.calls[operation] += 1
                try:
                    answer = await getattr(await self._client(service), operation)(**params)
                except ClientError as exc:
                    raise translate(exc, what) from None
                except CONNECTION_ERRORS as exc:
                    raise await self._connection_failed(exc, what) from None
                except (BotoCoreError, aiohttp.ClientError) as exc:
                    raise BackendError(f"{what}: {exc}", code=type(exc).__name__, retryable=_transient(exc)) from None
                self._unreachable_since = None
                return answer  # type: ignore[no-any-return]

        return await retry(once, retryable=_is_throttle, policy=self._backoff, sleep=self._sleep)

    async def _pages(self, service: str, operation: str, what: str, **params: Any) -> AsyncIterator[dict[str, Any]]:
        """The pages of a List call, walked by botocore's paginator for it (tokens, page size).

        Each page is requested through `_call`: bounded, counted, translated and retried like any other
        call. A paginator from `client.get_paginator` would call the client itself, around all of that,
        and keep using a client that a restart of the local server has closed.
        """
        meta = (await self._client(service)).meta
        operation_api = meta.method_to_api_mapping[operation]
        model = meta.service_model
        paginator = AioPaginator(
            functools.partial(self._call, service, operation, what),
            _pagination(model.service_name, model.api_version, operation_api),
            model.operation_model(operation_api),
        )
        try:
            async for page in paginator.paginate(**params, PaginationConfig={"PageSize": PAGE_SIZE}):
                yield page
        except PaginationError as exc:  # the service sent the same NextToken twice
            raise BackendError(f"{what}: {exc}", code="PaginationError") from None

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

    async def download_file(self, bucket: str, key: str, path: str) -> None:
        client = await self._client("s3")
        self.calls["download_file"] += 1
        try:
            await client.download_file(bucket, key, path)
        except ClientError as exc:
            raise translate(exc, f"s3://{bucket}/{key}") from None

    async def delete_prefix(self, bucket: str, prefix: str) -> int:
        keys: list[str] = []
        async for page in self._pages("s3", "list_objects_v2", f"s3://{bucket}/{prefix}", Bucket=bucket, Prefix=prefix):
            keys.extend(o["Key"] for o in page.get("Contents", []))
        for start in range(0, len(keys), S3_DELETE_BATCH):
            batch = [{"Key": k} for k in keys[start:start + S3_DELETE_BATCH]]
            answer = await self._call("s3", "delete_objects", f"s3://{bucket}/{prefix}", Bucket=bucket,
                                      Delete={"Objects": batch, "Quiet": True})
            if answer.get("Errors"):
                first = answer["Errors"][0]
                raise BackendError(f"s3://{bucket}/{first.get('Key')}: {first.get('Code')}: {first.get('Message')}",
                                   code=str(first.get("Code")))
        return len(keys)

    # control plane

    async def create(self, kind: Kind, request: dict[str, Any]) -> dict[str, Any]:
        api = KIND_API[kind]
        what = f"{kind.value} {request[api.name_key]}"
        response = await self._call(api.service, api.create, what, **request)
        if api.create_arn_key:
            return {api.arn_key: response.get(api.create_arn_key)}
        return response

    async def describe(self, kind: Kind, name: str) -> dict[str, Any]:
        api = KIND_API[kind]
        return await self._call(api.service, api.describe, f"{kind.value} {name}", **{api.name_key: name}, **api.scope)

    async def list_summaries(
        self, kind: Kind, *, name_contains: str | None = None, created_after: datetime | None = None
    ) -> list[dict[str, Any]]:
        api = KIND_API[kind]
        params: dict[str, Any] = dict(api.scope)
        if api.sortable:
            params.update(SortBy="CreationTime", SortOrder="Ascending")
            if created_after is not None:
                params["CreationTimeAfter"] = created_after
        if name_contains:
            params[api.name_filter] = name_contains
        items: list[dict[str, Any]] = []
        try:
            async for page in self._pages(api.service, api.list, f"list {kind.value}s", **params):
                items.extend(page.get(api.list_key, []))
        except ResourceNotFound:
            if not api.scope:
                raise
            # The group itself is missing (never made in this region): nothing in it.
        return items

    async def delete(self, kind: Kind, name: str) -> None:
        api = KIND_API[kind]
        if api.delete is None:
            raise BackendError(f"{kind.value} {name}: SageMaker cannot delete this kind", code="Unsupported")
        await self._call(api.service, api.delete, f"delete {kind.value} {name}", **{api.name_key: name}, **api.scope)

    async def stop(self, kind: Kind, name: str) -> None:
        api = KIND_API[kind]
        if api.stop is None:
            raise BackendError(f"{kind.value} {name}: only jobs can be stopped", code="Unsupported")
        await self._call(api.service, api.stop, f"stop {kind.value} {name}", **{api.name_key: name})

    async def list_tags(self, arn: str) -> dict[str, str]:
        if arn.split(":", 3)[2:3] == [KIND_API[Kind.SCHEDULE].service]:  # arn:<partition>:scheduler:…
            # Schedules have no tags of their own; jobman keeps its tags in their Description.
            name = arn.rsplit("/", 1)[-1]
            schedule = await self.describe(Kind.SCHEDULE, name)
            return tags_in_description(schedule.get("Description"))
        tags: dict[str, str] = {}
        async for page in self._pages("sagemaker", "list_tags", f"tags of {arn}", ResourceArn=arn):
            tags.update({t["Key"]: t["Value"] for t in page.get("Tags", [])})
        return tags

    async def ensure_schedule_group(self) -> None:
        """jobman's schedule group, created once (tagged as jobman's) where it is missing."""
        what = f"schedule group {SCHEDULE_GROUP}"
        try:
            await self._call("scheduler", "get_schedule_group", what, Name=SCHEDULE_GROUP)
            return
        except ResourceNotFound:
            pass
        try:
            await self._call("scheduler", "create_schedule_group", what, Name=SCHEDULE_GROUP,
                             Tags=[{"Key": TAG_MANAGED, "Value": "true"}])
        except ResourceInUse:
            pass  # another jobman process made it meanwhile

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
        except CONNECTION_ERRORS as exc:
            failure = await self._connection_failed(exc, f"invoke {endpoint_name}")
            raise InvokeError(str(failure), code=failure.code, retryable=failure.retryable) from None
        except (BotoCoreError, aiohttp.ClientError) as exc:
            retryable = _transient(exc)
            raise InvokeError(f"{type(exc).__name__}: {exc}", code=type(exc).__name__, retryable=retryable) from None
