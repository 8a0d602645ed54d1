"""Open the backend an experiment names. Both are the aioboto3 backend; `local` points it at jobman's server."""

from __future__ import annotations

import asyncio

from jobman.backends.sagemaker import AwsBackend
from jobman.config import AwsConfig
from jobman.errors import BackendError, ConfigError
from jobman.paths import jobman_home

LOCAL_ACCOUNT = "000000000000"
LOCAL_ROLE_ARN = f"arn:aws:iam::{LOCAL_ACCOUNT}:role/jobman-local"
# The local server checks no signatures, but botocore signs every request and so needs some keys.
LOCAL_CREDENTIALS = {"aws_access_key_id": "jobman-local", "aws_secret_access_key": "jobman-local"}


async def open_running_backend(name: str, aws: AwsConfig) -> AwsBackend:
    """Like `open_backend`, but a local server that is not running is not started: BackendError NotRunning."""
    if name == "local":
        from jobman.backends.local.daemon import running_url

        url = await asyncio.to_thread(running_url, jobman_home())
        if url is None:
            raise BackendError("the local server is not running (it is not started for a dry run)", code="NotRunning")
    return await open_backend(name, aws)


def local_regions() -> list[str]:
    """The regions the local backend holds state for (none before its first use)."""
    from jobman.backends.local.store import layout

    return layout(jobman_home()).regions()


def aws_default_region() -> str:
    """The region of the user's AWS configuration, when credentials are available; BackendError says why not.

    Nothing is sent anywhere: credentials are only resolved (environment, files, SSO cache, instance role)."""
    import botocore.session
    from botocore.exceptions import BotoCoreError

    try:
        session = botocore.session.Session()
        credentials = session.get_credentials()
        region = session.get_config_variable("region")
    except BotoCoreError as exc:
        raise BackendError(f"the AWS configuration cannot be read ({exc})", code="NoCredentials") from None
    if credentials is None:
        raise BackendError("no AWS credentials are configured", code="NoCredentials")
    if not region:
        raise BackendError("the AWS configuration names no default region", code="NoRegion")
    return str(region)


async def open_backend(name: str, aws: AwsConfig) -> AwsBackend:
    if name == "local":
        from jobman.backends.local.daemon import ensure_running

        home = jobman_home()

        async def restart() -> str:
            """The server stopped under us (`jobman local stop`, a crash): start it again, as `run` would."""
            return await asyncio.to_thread(ensure_running, home)

        url = await restart()
        return AwsBackend(name="local", region=aws.region, endpoint_url=url, credentials=LOCAL_CREDENTIALS,
                          reconnect=restart)
    if name == "sagemaker":
        return AwsBackend(name="sagemaker", region=aws.region, profile=aws.profile or None)
    raise ConfigError(f"backend {name!r}: expected 'local' or 'sagemaker'")
