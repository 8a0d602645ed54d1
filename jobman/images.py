"""Built-in XGBoost image URIs per region, from the registry table the SageMaker Python SDK publishes."""

from __future__ import annotations

import json
import re
from functools import cache
from importlib import resources
from typing import Any

from jobman.errors import ConfigError

DEFAULT_VERSION = "1.7-1"
_URI = re.compile(
    r"^(?P<account>\d{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(\.cn)?"
    r"/(?P<repository>xgboost|sagemaker-xgboost):(?P<version>[\w.-]+)$"
)


@cache
def _table() -> dict[str, Any]:
    text = resources.files("jobman.data").joinpath("xgboost_images.json").read_text()
    return json.loads(text)["versions"]  # type: ignore[no-any-return]


def versions() -> list[str]:
    return sorted(_table())


def xgboost_image_uri(region: str, version: str = DEFAULT_VERSION) -> str:
    table = _table()
    if version not in table:
        raise ConfigError(f"unknown XGBoost version {version!r}; expected one of {', '.join(versions())}")
    entry = table[version]
    account = entry["registries"].get(region)
    if account is None:
        raise ConfigError(f"no built-in XGBoost {version} image is published for region {region!r}")
    domain = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    return f"{account}.dkr.ecr.{region}.{domain}/{entry['repository']}:{version}"


def is_builtin_xgboost(uri: str) -> bool:
    """True when `uri` is a published built-in XGBoost image of any region and version."""
    match = _URI.match(uri)
    if match is None:
        return False
    entry = _table().get(match["version"])
    return bool(
        entry
        and entry["repository"] == match["repository"]
        and entry["registries"].get(match["region"]) == match["account"]
    )
