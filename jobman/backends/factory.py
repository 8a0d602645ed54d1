"""Open the backend an experiment names. Both are the aioboto3 backend; `local` points it at jobman's server."""

from __future__ import annotations

import asyncio

from jobman.backends.sagemaker import AwsBackend
from jobman.config import AwsConfig
from jobman.errors import ConfigError
from jobman.paths import jobman_home

LOCAL_ACCOUNT = "000000000000"
LOCAL_ROLE_ARN = f"arn:aws:iam::{LOCAL_ACCOUNT}:role/jobman-local"
# The local server checks no signatures, but botocore signs every request and so needs some keys.
LOCAL_CREDENTIALS = {"aws_access_key_id": "jobman-local", "aws_secret_access_key": "jobman-local"}


async def open_backend(name: str, aws: AwsConfig) -> AwsBackend:
    if name == "local":
        from jobman.backends.local.daemon import ensure_running

        url = await asyncio.to_thread(ensure_running, jobman_home())
        return AwsBackend(name="local", region=aws.region, endpoint_url=url, credentials=LOCAL_CREDENTIALS)
    if name == "sagemaker":
        return AwsBackend(name="sagemaker", region=aws.region, profile=aws.profile or None)
    raise ConfigError(f"backend {name!r}: expected 'local' or 'sagemaker'")
