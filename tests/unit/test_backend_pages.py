"""List calls walked by botocore's paginators: every page one bounded, counted, translated, retried call.

The backend's clients are replaced by scripted ones that keep botocore's real `meta` (service model, method
names), so the paginator sees the real pagination rules while each test decides what every page answers.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

import botocore.session
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from jobman.backends.sagemaker import AwsBackend
from jobman.backoff import Backoff
from jobman.errors import BackendError, ResourceNotFound
from jobman.kinds import SCHEDULE_GROUP, Kind

Request = tuple[str, str, dict[str, Any]]  # (client url, operation, parameters)


@functools.cache
def botocore_meta(service: str) -> Any:
    session = botocore.session.get_session()
    return session.create_client(service, region_name="us-east-1", aws_access_key_id="x",
                                 aws_secret_access_key="x").meta


def throttled() -> ClientError:
    return ClientError({"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"},
                        "ResponseMetadata": {"HTTPStatusCode": 400}}, "List")


class ScriptedClient:
    """Answers each List call with the next scripted answer (a page dict, or an exception to raise)."""

    def __init__(self, url: str, meta: Any, requests: list[Request], answers: Iterator[Any]) -> None:
        self.url, self.meta, self.requests, self.answers = url, meta, requests, answers

    def __getattr__(self, operation: str) -> Any:
        async def call(**params: Any) -> dict[str, Any]:
            self.requests.append((self.url, operation, params))
            answer = next(self.answers)
            if isinstance(answer, BaseException):
                raise answer
            return answer  # type: ignore[no-any-return]

        return call


def scripted_backend(answers: list[Any], **options: Any) -> tuple[AwsBackend, list[Request]]:
    async def no_sleep(_: float) -> None:
        pass

    backend = AwsBackend(region="us-east-1", endpoint_url="http://127.0.0.1:1", backoff=Backoff(attempts=3),
                         credentials={"aws_access_key_id": "x", "aws_secret_access_key": "x"}, sleep=no_sleep,
                         **options)
    requests: list[Request] = []
    script = iter(answers)

    async def client(service: str) -> ScriptedClient:
        # A client per URL, as the real ones are: a restart of the local server makes a new one.
        return ScriptedClient(str(backend._endpoint_url), botocore_meta(service), requests, script)

    backend._client = client  # type: ignore[method-assign]
    return backend, requests


def endpoints(*names: str, token: str | None = None) -> dict[str, Any]:
    page: dict[str, Any] = {"Endpoints": [{"EndpointName": n} for n in names]}
    if token:
        page["NextToken"] = token
    return page


async def test_pages_follow_the_tokens_and_each_counts_once() -> None:
    backend, requests = scripted_backend([endpoints("a", "b", token="t1"), endpoints("c", token="t2"), endpoints("d")])
    got = await backend.list_summaries(Kind.ENDPOINT, name_contains="exp-")
    assert [e["EndpointName"] for e in got] == ["a", "b", "c", "d"]
    first = {"MaxResults": 100, "SortBy": "CreationTime", "SortOrder": "Ascending", "NameContains": "exp-"}
    assert [params for _, _, params in requests] == [first, {**first, "NextToken": "t1"}, {**first, "NextToken": "t2"}]
    assert backend.calls["list_endpoints"] == 3


async def test_a_throttled_page_is_retried_alone() -> None:
    backend, requests = scripted_backend([endpoints("a", token="t1"), throttled(), throttled(), endpoints("b")])
    got = await backend.list_summaries(Kind.ENDPOINT)
    assert [e["EndpointName"] for e in got] == ["a", "b"]  # nothing listed twice, nothing lost
    assert [params.get("NextToken") for _, _, params in requests] == [None, "t1", "t1", "t1"]
    assert backend.calls["list_endpoints"] == 4  # every attempt is an API call


async def test_throttling_past_the_backoff_is_a_translated_error() -> None:
    backend, requests = scripted_backend([endpoints("a", token="t1"), *[throttled()] * 3])
    with pytest.raises(BackendError, match="^list endpoints: ThrottlingException: Rate exceeded$") as err:
        await backend.list_summaries(Kind.ENDPOINT)
    assert err.value.retryable and len(requests) == 4


async def test_a_restarted_local_server_serves_the_rest_of_the_listing() -> None:
    async def restart() -> str:
        return "http://127.0.0.1:2"

    backend, requests = scripted_backend(
        [endpoints("a", token="t1"), EndpointConnectionError(endpoint_url="http://127.0.0.1:1"), endpoints("b")],
        name="local", reconnect=restart,
    )
    got = await backend.list_summaries(Kind.ENDPOINT)
    assert [e["EndpointName"] for e in got] == ["a", "b"]
    assert [(url, params.get("NextToken")) for url, _, params in requests] == [
        ("http://127.0.0.1:1", None), ("http://127.0.0.1:1", "t1"), ("http://127.0.0.1:2", "t1")]


async def test_a_token_sent_twice_ends_the_listing_with_an_error() -> None:
    backend, requests = scripted_backend([endpoints("a", token="t1"), endpoints("b", token="t2"),
                                          endpoints("c", token="t2")])
    with pytest.raises(BackendError, match="^list endpoints: .*same next token was received twice") as err:
        await backend.list_summaries(Kind.ENDPOINT)
    assert err.value.code == "PaginationError" and len(requests) == 3


async def test_a_missing_schedule_group_holds_no_schedules() -> None:
    missing = ClientError({"Error": {"Code": "ResourceNotFoundException", "Message": "Schedule group jobman does "
                                     "not exist."}, "ResponseMetadata": {"HTTPStatusCode": 404}}, "ListSchedules")
    backend, requests = scripted_backend([missing])
    assert await backend.list_summaries(Kind.SCHEDULE, name_contains="exp-") == []
    assert requests == [("http://127.0.0.1:1", "list_schedules",
                         {"GroupName": SCHEDULE_GROUP, "NamePrefix": "exp-", "MaxResults": 100})]


async def test_a_missing_resource_of_an_unscoped_kind_is_an_error() -> None:
    missing = ClientError({"Error": {"Code": "ResourceNotFound", "Message": "gone"},
                           "ResponseMetadata": {"HTTPStatusCode": 400}}, "ListModels")
    backend, _ = scripted_backend([missing])
    with pytest.raises(ResourceNotFound, match="^list models: gone$"):
        await backend.list_summaries(Kind.MODEL)


async def test_tags_of_every_page() -> None:
    arn = "arn:aws:sagemaker:us-east-1:123456789012:endpoint/e"
    backend, requests = scripted_backend([
        {"Tags": [{"Key": "a", "Value": "1"}], "NextToken": "t1"},
        {"Tags": [{"Key": "b", "Value": "2"}]},
    ])
    assert await backend.list_tags(arn) == {"a": "1", "b": "2"}
    assert [params for _, _, params in requests] == [
        {"ResourceArn": arn, "MaxResults": 100}, {"ResourceArn": arn, "MaxResults": 100, "NextToken": "t1"}]
    assert backend.calls["list_tags"] == 2
