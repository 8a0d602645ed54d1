"""SageMaker List semantics: filters, SortBy/SortOrder, MaxResults, NextToken."""

from __future__ import annotations

from typing import Any

import pytest

from jobman.backends.local.listing import ListSpec, list_resources, paginate
from jobman.backends.local.wire import AwsError

SPEC = ListSpec("EndpointName", "EndpointStatus",
                {"Name": "EndpointName", "CreationTime": "CreationTime", "Status": "EndpointStatus"})


def _items() -> list[dict[str, Any]]:
    statuses = ["InService", "Creating", "Failed", "InService", "Deleting"]
    return [{"EndpointName": f"exp-{i}-endpoint", "CreationTime": 1000.0 + i, "LastModifiedTime": 2000.0 + i,
             "EndpointStatus": statuses[i % 5]} for i in range(12)]


def _names(page_items: list[dict[str, Any]]) -> list[str]:
    return [item["EndpointName"] for item in page_items]


def test_defaults_are_newest_first_ten_a_page() -> None:
    page = list_resources(_items(), {}, SPEC)
    assert _names(page.items)[:2] == ["exp-11-endpoint", "exp-10-endpoint"]
    assert len(page.items) == 10 and page.next_token


def test_pages_cover_everything_once() -> None:
    seen: list[str] = []
    request: dict[str, Any] = {"MaxResults": 5, "SortBy": "Name", "SortOrder": "Ascending"}
    while True:
        page = list_resources(_items(), request, SPEC)
        seen += _names(page.items)
        if not page.next_token:
            break
        request["NextToken"] = page.next_token
    assert seen == sorted(item["EndpointName"] for item in _items())


def test_a_page_stays_right_when_items_change_between_calls() -> None:
    items = _items()
    first = list_resources(items, {"MaxResults": 3}, SPEC)
    del items[11]  # deleted after the first page was returned
    items.append({"EndpointName": "late", "CreationTime": 5000.0, "EndpointStatus": "Creating"})
    second = list_resources(items, {"MaxResults": 3, "NextToken": first.next_token}, SPEC)
    assert _names(second.items) == ["exp-8-endpoint", "exp-7-endpoint", "exp-6-endpoint"]


def test_filters() -> None:
    items = _items()
    assert _names(list_resources(items, {"NameContains": "EXP-1", "MaxResults": 100}, SPEC).items) == [
        "exp-11-endpoint", "exp-10-endpoint", "exp-1-endpoint"]
    in_service = list_resources(items, {"StatusEquals": "InService", "MaxResults": 100}, SPEC).items
    assert {i["EndpointStatus"] for i in in_service} == {"InService"} and len(in_service) == 5
    window = {"CreationTimeAfter": 1002.0, "CreationTimeBefore": 1005.0, "MaxResults": 100}
    assert _names(list_resources(items, window, SPEC).items) == ["exp-4-endpoint", "exp-3-endpoint"]
    modified = {"LastModifiedTimeAfter": "1970-01-01T00:33:30Z", "MaxResults": 100}  # 2010 s
    assert len(list_resources(items, modified, SPEC).items) == 1


def test_sort_by_status() -> None:
    page = list_resources(_items(), {"SortBy": "Status", "SortOrder": "Ascending", "MaxResults": 3}, SPEC)
    assert [i["EndpointStatus"] for i in page.items] == ["Creating", "Creating", "Creating"]


@pytest.mark.parametrize("request_", [
    {"MaxResults": 0}, {"MaxResults": 101}, {"SortBy": "Size"}, {"SortOrder": "Up"}, {"NextToken": "!!garbage"},
])
def test_invalid_requests(request_: dict[str, Any]) -> None:
    with pytest.raises(AwsError) as error:
        list_resources(_items(), request_, SPEC)
    assert error.value.code == "ValidationException"


def test_models_cannot_sort_by_status() -> None:
    models = ListSpec("ModelName", None, {"Name": "ModelName", "CreationTime": "CreationTime"})
    with pytest.raises(AwsError, match="Name, CreationTime"):
        list_resources([], {"SortBy": "Status"}, models)


def test_paginate_is_generic() -> None:
    rows = [{"k": k} for k in "dbca"]
    page = paginate(rows, lambda r: (r["k"],), descending=False, limit=3, token=None)
    assert [r["k"] for r in page.items] == ["a", "b", "c"]
    rest = paginate(rows, lambda r: (r["k"],), descending=False, limit=3, token=page.next_token)
    assert [r["k"] for r in rest.items] == ["d"] and rest.next_token is None
