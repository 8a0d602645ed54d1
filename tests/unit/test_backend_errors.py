"""How the aioboto3 backend names AWS errors, and what it will retry."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError, ReadTimeoutError

from jobman.backends.sagemaker import CONNECTION_ERRORS, AwsBackend, _transient, translate
from jobman.backoff import Backoff
from jobman.errors import BackendError, ConfigError, ResourceInUse, ResourceNotFound, Unreachable
from jobman.kinds import Kind
from jobman.timing import Timing


def client_error(code: str, message: str, status: int = 400) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message},
                        "ResponseMetadata": {"HTTPStatusCode": status}}, "Op")


@pytest.mark.parametrize("error", [
    client_error("ValidationException", 'Could not find endpoint "arn:aws:sagemaker:…:endpoint/x".'),
    client_error("ValidationException", "Requested resource not found."),
    client_error("ResourceNotFoundException", "The specified log group does not exist."),
])
def test_not_found(error: ClientError) -> None:
    assert isinstance(translate(error, "x"), ResourceNotFound)


@pytest.mark.parametrize("error", [
    client_error("ResourceInUse", "Training job names must be unique within an AWS account and region"),
    client_error("ValidationException", 'Cannot create already existing endpoint "arn:…".'),
])
def test_in_use(error: ClientError) -> None:
    assert isinstance(translate(error, "x"), ResourceInUse)


def test_retryable_codes() -> None:
    assert translate(client_error("ThrottlingException", "Rate exceeded"), "x").retryable
    assert translate(client_error("InternalFailure", "oops", 500), "x").retryable
    denied = translate(client_error("AccessDeniedException", "no"), "x")
    assert not denied.retryable and str(denied) == "x: AccessDeniedException: no"


def test_transient_transport_errors() -> None:
    assert _transient(ConnectionResetError())
    assert not _transient(NoCredentialsError())
    assert all(isinstance(e, CONNECTION_ERRORS) for e in (
        EndpointConnectionError(endpoint_url="http://127.0.0.1:1"), ReadTimeoutError(endpoint_url="http://127.0.0.1:1"),
        ConnectionResetError(), TimeoutError()))


def test_a_duplicate_schedule_is_in_use() -> None:
    assert isinstance(translate(client_error("ConflictException", "Schedule x already exists.", 409), "x"),
                      ResourceInUse)


def unreachable_backend(**options: Any) -> AwsBackend:
    """Port 1 on loopback refuses every connection at once."""
    async def no_sleep(_: float) -> None:
        pass

    return AwsBackend(region="us-east-1", endpoint_url="http://127.0.0.1:1", backoff=Backoff(attempts=1),
                      control_attempts=1,
                      credentials={"aws_access_key_id": "x", "aws_secret_access_key": "x"}, sleep=no_sleep, **options)


async def test_connection_failures_end_in_unreachable_after_the_budget() -> None:
    now = [1000.0]
    async with unreachable_backend(monotonic=lambda: now[0], unreachable_budget_s=60) as backend:
        with pytest.raises(BackendError) as first:
            await backend.describe(Kind.ENDPOINT, "e")
        assert first.value.retryable and not isinstance(first.value, Unreachable)
        now[0] += 30
        with pytest.raises(BackendError) as within:
            await backend.describe(Kind.ENDPOINT, "e")
        assert within.value.retryable and not isinstance(within.value, Unreachable)
        now[0] += 31
        with pytest.raises(Unreachable, match="cannot reach AWS in us-east-1 for 1m01s") as late:
            await backend.describe(Kind.ENDPOINT, "e")
        assert not late.value.retryable


async def test_a_local_server_that_cannot_be_restarted_is_unreachable_at_once() -> None:
    restarts = []

    async def restart() -> str:
        restarts.append(1)
        raise BackendError("the local server did not start", code="LocalServerUnavailable")

    async with unreachable_backend(name="local", reconnect=restart) as backend:
        with pytest.raises(Unreachable, match="stopped and could not be started again: the local server did not"):
            await backend.describe(Kind.ENDPOINT, "e")
    assert restarts == [1]


def test_poll_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOBMAN_POLL_S", "0.25")
    assert Timing.for_backend("sagemaker") == Timing(0.25, 0.25, 120.0)
    monkeypatch.setenv("JOBMAN_POLL_S", "soon")
    with pytest.raises(ConfigError, match="JOBMAN_POLL_S: expected seconds"):
        Timing.for_backend("local")
