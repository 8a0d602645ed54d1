"""The backend protocol: SageMaker-shaped, so the controller never branches on which cloud it talks to.

Requests and responses are the SageMaker API's own dicts. A missing resource raises
`ResourceNotFound`, a duplicate create `ResourceInUse`, anything else `BackendError` with
`retryable` set for throttling and 5xx, after the backend's own retries.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol, Self

from jobman.kinds import Kind


class Backend(Protocol):
    name: str  # "local" or "sagemaker"
    region: str

    async def account_id(self) -> str: ...

    # storage
    async def ensure_bucket(self, bucket: str) -> None: ...
    async def upload_file(self, path: str, bucket: str, key: str) -> None: ...
    async def download_file(self, bucket: str, key: str, path: str) -> None: ...
    async def delete_prefix(self, bucket: str, prefix: str) -> int: ...  # how many objects it removed

    # control plane, generic over the kinds in `jobman.kinds`
    async def create(self, kind: Kind, request: dict[str, Any]) -> dict[str, Any]: ...
    async def describe(self, kind: Kind, name: str) -> dict[str, Any]: ...
    async def list_summaries(
        self, kind: Kind, *, name_contains: str | None = None, created_after: datetime | None = None
    ) -> list[dict[str, Any]]: ...
    async def delete(self, kind: Kind, name: str) -> None: ...
    async def stop(self, kind: Kind, name: str) -> None: ...  # a job (training or transform) that runs
    async def list_tags(self, arn: str) -> dict[str, str]: ...  # a schedule's are read from its Description
    async def ensure_schedule_group(self) -> None: ...

    # logs: returns new lines and the cursor to pass next time
    async def training_log(self, job_name: str, cursor: str | None) -> tuple[list[str], str | None]: ...

    # data plane
    async def invoke_endpoint(self, endpoint_name: str, body: bytes, content_type: str = "text/csv") -> bytes: ...

    async def aclose(self) -> None: ...

    # `async with await open_backend(...) as backend:` closes it, however the block ends
    async def __aenter__(self) -> Self: ...
    async def __aexit__(self, *exc: object) -> None: ...
