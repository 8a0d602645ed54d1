"""How the aioboto3 backend names AWS errors, and what it will retry."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError, ReadTimeoutError

from jobman.backends.sagemaker import _transient, translate
from jobman.errors import ConfigError, ResourceInUse, ResourceNotFound
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
    assert _transient(EndpointConnectionError(endpoint_url="http://127.0.0.1:1"))
    assert _transient(ReadTimeoutError(endpoint_url="http://127.0.0.1:1"))
    assert _transient(ConnectionResetError())
    assert not _transient(NoCredentialsError())


def test_poll_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOBMAN_POLL_S", "0.25")
    assert Timing.for_backend("sagemaker") == Timing(0.25, 0.25)
    monkeypatch.setenv("JOBMAN_POLL_S", "soon")
    with pytest.raises(ConfigError, match="JOBMAN_POLL_S: expected seconds"):
        Timing.for_backend("local")
