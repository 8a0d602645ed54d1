"""Filter, sort and page lists as SageMaker's (and CloudWatch Logs') List calls do.

NextToken is a keyset cursor (the sort key of the last item returned), not an index, so a page stays
right when items are created or deleted between calls.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from jobman.backends.local.wire import AwsError, parse_timestamp

Item = dict[str, Any]


@dataclass(frozen=True)
class Page:
    items: list[Item]
    next_token: str | None


def paginate(
    items: Sequence[Item],
    sort_key: Callable[[Item], tuple[Any, ...]],
    *,
    descending: bool,
    limit: int,
    token: str | None,
    error_code: str = "ValidationException",
) -> Page:
    """Sort by `sort_key` (which must be unique: end it with the name) and cut one page after `token`."""
    ordered = sorted(items, key=sort_key, reverse=descending)
    if token:
        after = _decode(token, error_code)
        try:
            ordered = [item for item in ordered if _after(list(sort_key(item)), after, descending)]
        except TypeError:  # a forged token whose values do not compare with the sort key's
            raise AwsError(error_code, "The specified nextToken is invalid.") from None
    page = ordered[:limit]
    more = len(ordered) > limit
    return Page(page, _encode(list(sort_key(page[-1]))) if more and page else None)


def _after(key: list[Any], cursor: list[Any], descending: bool) -> bool:
    return key < cursor if descending else key > cursor


def _encode(key: list[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(key).encode()).decode()


def _decode(token: str, error_code: str) -> list[Any]:
    try:
        value = json.loads(base64.urlsafe_b64decode(token.encode()))
    except (ValueError, binascii.Error) as exc:
        raise AwsError(error_code, "The specified nextToken is invalid.") from exc
    if not isinstance(value, list):
        raise AwsError(error_code, "The specified nextToken is invalid.")
    return value


@dataclass(frozen=True)
class ListSpec:
    """How one SageMaker List call names things: the fields of its items and what SortBy allows."""

    name_field: str
    status_field: str | None
    sort_fields: dict[str, str]  # SortBy value -> item field


def list_resources(items: Sequence[Item], request: dict[str, Any], spec: ListSpec) -> Page:
    """Apply a SageMaker List request (filters, SortBy/SortOrder, MaxResults, NextToken) to summaries."""
    selected = [item for item in items if _matches(item, request, spec)]
    sort_by = request.get("SortBy", "CreationTime")
    if sort_by not in spec.sort_fields:
        allowed = ", ".join(spec.sort_fields)
        raise AwsError(
            "ValidationException",
            f"1 validation error detected: Value '{sort_by}' at 'sortBy' failed to satisfy constraint: "
            f"Member must satisfy enum value set: [{allowed}]",
        )
    order = request.get("SortOrder", "Descending")
    if order not in ("Ascending", "Descending"):
        raise AwsError(
            "ValidationException",
            f"1 validation error detected: Value '{order}' at 'sortOrder' failed to satisfy constraint: "
            "Member must satisfy enum value set: [Ascending, Descending]",
        )
    limit = request.get("MaxResults", 10)
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= 100:
        raise AwsError(
            "ValidationException",
            f"1 validation error detected: Value '{limit}' at 'maxResults' failed to satisfy constraint: "
            "Member must have value less than or equal to 100",
        )
    field, name_field = spec.sort_fields[sort_by], spec.name_field

    def key(item: Item) -> tuple[Any, ...]:
        return (item.get(field) or 0, item[name_field].lower())

    return paginate(selected, key, descending=order == "Descending", limit=limit, token=request.get("NextToken"))


def _matches(item: Item, request: dict[str, Any], spec: ListSpec) -> bool:
    contains = request.get("NameContains")
    if contains and contains.lower() not in item[spec.name_field].lower():
        return False
    status = request.get("StatusEquals")
    if status and spec.status_field and item.get(spec.status_field) != status:
        return False
    for param, field, after in (
        ("CreationTimeAfter", "CreationTime", True),
        ("CreationTimeBefore", "CreationTime", False),
        ("LastModifiedTimeAfter", "LastModifiedTime", True),
        ("LastModifiedTimeBefore", "LastModifiedTime", False),
    ):
        if param in request and field in item:
            bound = parse_timestamp(request[param], param)
            if (item[field] <= bound) if after else (item[field] >= bound):
                return False
    return True
