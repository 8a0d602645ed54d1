"""experiment.toml -> frozen dataclasses. Every error names the file and the key and says what was expected."""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from jobman.durations import parse_duration_s
from jobman.errors import ConfigError
from jobman.images import versions as xgboost_versions

SAGEMAKER_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
MAX_EXPERIMENT_NAME = 40  # leaves room for "-r<run>-<kind>" within SageMaker's 63 characters
INVOKE_BODY_LIMIT = 6_291_456  # SageMaker refuses larger InvokeEndpoint bodies
BACKENDS = ("local", "sagemaker")
BUILTIN_SOURCES = ("boston",)
ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/.+$")
BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
TTL_ENFORCEMENTS = ("schedule", "gc")
SCHEDULER_ROLE_NEEDS = (
    "a role that trusts scheduler.amazonaws.com and may sagemaker:DeleteEndpoint, sagemaker:DeleteEndpointConfig "
    "and sagemaker:DeleteModel (README: 'TTL enforcement')"
)

T = TypeVar("T")


@dataclass(frozen=True)
class DataConfig:
    source: str  # "boston" or a CSV path, resolved against the experiment file's folder
    target: str = "MEDV"
    test_size: float = 0.33
    validation_size: float = 0.33
    seed: int = 0


@dataclass(frozen=True)
class TrainingConfig:
    algorithm: str = "xgboost"
    algorithm_version: str = "1.7-1"
    instance_type: str = "ml.m4.xlarge"
    instance_count: int = 1
    volume_size_gb: int = 5
    max_runtime_s: float = 86400.0
    hyperparameters: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class EndpointConfig:
    instance_type: str = "ml.m4.xlarge"
    initial_instance_count: int = 1
    keep: bool = False
    ttl_s: float = 3600.0
    wait_timeout_s: float = 1800.0
    ttl_enforcement: str = "schedule"  # "schedule": server-side schedules delete the chain; "gc": `jobman gc` does
    max_cost_usd: float | None = None  # refuse to deploy when the worst case (price x count x TTL) exceeds it


@dataclass(frozen=True)
class EvaluationConfig:
    max_payload_bytes: int = 5_000_000
    max_rows_per_chunk: int | None = None
    concurrency: int = 8
    output_dir: str = "jobman-output"


@dataclass(frozen=True)
class AwsConfig:
    region: str = "us-east-1"
    role_arn: str = ""
    bucket: str = ""
    prefix: str = ""
    profile: str = ""
    scheduler_role_arn: str = ""  # the role EventBridge Scheduler assumes to delete an expired chain


@dataclass(frozen=True)
class Experiment:
    name: str
    backend: str
    data: DataConfig
    training: TrainingConfig
    endpoint: EndpointConfig
    evaluation: EvaluationConfig
    aws: AwsConfig
    path: Path = field(compare=False)

    @property
    def digest(self) -> str:
        """Identity of what the file asks for: comments, order and spacing do not change it."""
        body = {k: v for k, v in asdict(self).items() if k != "path"}
        data_path = self.data_path
        if data_path is not None:
            body["data_sha256"] = hashlib.sha256(data_path.read_bytes()).hexdigest()
        return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()[:16]

    @property
    def data_path(self) -> Path | None:
        if self.data.source in BUILTIN_SOURCES:
            return None
        return (self.path.parent / self.data.source).resolve()


class _Table:
    """One TOML table being read: remembers the keys taken so leftovers are reported as unknown."""

    def __init__(self, file: Path, prefix: str, raw: Any) -> None:
        if not isinstance(raw, dict):
            raise ConfigError(f"{file}: [{prefix}] must be a table")
        self.file, self.prefix, self.raw = file, prefix, raw
        self.taken: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.prefix}.{name}" if self.prefix else name

    def fail(self, name: str, expected: str) -> ConfigError:
        return ConfigError(f"{self.file}: {self.key(name)}: expected {expected}, got {self.raw.get(name)!r}")

    def get(self, name: str, kind: type[T], default: T | None = None, *, required: bool = False) -> T:
        self.taken.add(name)
        if name not in self.raw:
            if required:
                raise ConfigError(f"{self.file}: {self.key(name)}: missing; expected {_describe(kind)}")
            return default  # type: ignore[return-value]
        value = self.raw[name]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise self.fail(name, _describe(kind))
        return value  # type: ignore[no-any-return]

    def table(self, name: str) -> _Table:
        self.taken.add(name)
        return _Table(self.file, self.key(name), self.raw.get(name, {}))

    def finish(self) -> None:
        unknown = sorted(set(self.raw) - self.taken)
        if unknown:
            raise ConfigError(f"{self.file}: {self.key(unknown[0])}: unknown key")


def _describe(kind: type) -> str:
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false", dict: "a table"}.get(
        kind, kind.__name__
    )


def _positive(t: _Table, name: str, value: float) -> None:
    if value <= 0:
        raise t.fail(name, "a positive number")


def _fraction(t: _Table, name: str, value: float) -> None:
    if not 0 < value < 1:
        raise t.fail(name, "a number between 0 and 1 (exclusive)")


def _duration(t: _Table, name: str, default: float) -> float:
    t.taken.add(name)
    if name not in t.raw:
        return default
    try:
        return parse_duration_s(t.raw[name])
    except ValueError:
        raise t.fail(name, "a duration like '90s', '30m', '1h' or '2d'") from None


def _instance_type(t: _Table, name: str, default: str) -> str:
    value = t.get(name, str, default)
    if not re.fullmatch(r"(ml|local)\.[a-z0-9-]+\.[a-z0-9]+", value):
        raise t.fail(name, "a SageMaker instance type like 'ml.m5.xlarge'")
    return value


def _hyperparameters(t: _Table) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in t.raw.items():
        t.taken.add(key)
        if isinstance(value, bool):
            out[key] = "true" if value else "false"
        elif isinstance(value, int | float | str):
            out[key] = str(value)
        else:
            raise t.fail(key, "a string, number or boolean")
    if "num_round" not in out:
        raise ConfigError(f"{t.file}: {t.key('num_round')}: missing; the built-in XGBoost algorithm requires it")
    return out


def _data(t: _Table) -> DataConfig:
    data = DataConfig(
        source=t.get("source", str, "boston"),
        target=t.get("target", str, "MEDV"),
        test_size=t.get("test_size", float, 0.33),
        validation_size=t.get("validation_size", float, 0.33),
        seed=t.get("seed", int, 0),
    )
    _fraction(t, "test_size", data.test_size)
    _fraction(t, "validation_size", data.validation_size)
    if not data.source:
        raise t.fail("source", "'boston' or a path to a CSV file")
    t.finish()
    return data


def _training(t: _Table) -> TrainingConfig:
    algorithm = t.get("algorithm", str, "xgboost")
    if algorithm != "xgboost":
        raise t.fail("algorithm", "'xgboost' (the built-in algorithm jobman supports)")
    version = t.get("algorithm_version", str, "1.7-1")
    if version not in xgboost_versions():
        raise t.fail("algorithm_version", f"one of {', '.join(xgboost_versions())}")
    cfg = TrainingConfig(
        algorithm=algorithm,
        algorithm_version=version,
        instance_type=_instance_type(t, "instance_type", "ml.m4.xlarge"),
        instance_count=t.get("instance_count", int, 1),
        volume_size_gb=t.get("volume_size_gb", int, 5),
        max_runtime_s=_duration(t, "max_runtime", 86400.0),
        hyperparameters=_hyperparameters(t.table("hyperparameters")),
    )
    _positive(t, "instance_count", cfg.instance_count)
    _positive(t, "volume_size_gb", cfg.volume_size_gb)
    t.finish()
    return cfg


def _endpoint(t: _Table) -> EndpointConfig:
    cfg = EndpointConfig(
        instance_type=_instance_type(t, "instance_type", "ml.m4.xlarge"),
        initial_instance_count=t.get("initial_instance_count", int, 1),
        keep=t.get("keep", bool, False),
        ttl_s=_duration(t, "ttl", 3600.0),
        wait_timeout_s=_duration(t, "wait_timeout", 1800.0),
        ttl_enforcement=t.get("ttl_enforcement", str, "schedule"),
        max_cost_usd=t.get("max_cost_usd", float, None),
    )
    _positive(t, "initial_instance_count", cfg.initial_instance_count)
    if cfg.ttl_enforcement not in TTL_ENFORCEMENTS:
        raise t.fail("ttl_enforcement", "'schedule' (server-side schedules delete the endpoint) or 'gc'")
    if cfg.max_cost_usd is not None and not (0 <= cfg.max_cost_usd < float("inf")):
        raise t.fail("max_cost_usd", "a finite number of US dollars, at least 0")
    t.finish()
    return cfg


def _evaluation(t: _Table) -> EvaluationConfig:
    cfg = EvaluationConfig(
        max_payload_bytes=t.get("max_payload_bytes", int, 5_000_000),
        max_rows_per_chunk=t.get("max_rows_per_chunk", int, None),
        concurrency=t.get("concurrency", int, 8),
        output_dir=t.get("output_dir", str, "jobman-output"),
    )
    if not 0 < cfg.max_payload_bytes <= INVOKE_BODY_LIMIT:
        raise t.fail("max_payload_bytes", f"a positive integer of at most {INVOKE_BODY_LIMIT} (SageMaker's limit)")
    if cfg.max_rows_per_chunk is not None:
        _positive(t, "max_rows_per_chunk", cfg.max_rows_per_chunk)
    if not 0 < cfg.concurrency <= 256:
        raise t.fail("concurrency", "an integer from 1 to 256")
    t.finish()
    return cfg


def _aws(t: _Table) -> AwsConfig:
    cfg = AwsConfig(
        region=t.get("region", str, "us-east-1"),
        role_arn=t.get("role_arn", str, ""),
        bucket=t.get("bucket", str, ""),
        prefix=t.get("prefix", str, "").strip("/"),
        profile=t.get("profile", str, ""),
        scheduler_role_arn=t.get("scheduler_role_arn", str, ""),
    )
    if not re.fullmatch(r"[a-z]{2}(-[a-z]+)+-\d", cfg.region):
        raise t.fail("region", "an AWS region like 'us-east-1'")
    if cfg.role_arn and not ROLE_ARN.match(cfg.role_arn):
        raise t.fail("role_arn", "an IAM role ARN like 'arn:aws:iam::123456789012:role/SageMakerRole'")
    if cfg.scheduler_role_arn and not ROLE_ARN.match(cfg.scheduler_role_arn):
        raise t.fail("scheduler_role_arn", "an IAM role ARN like 'arn:aws:iam::123456789012:role/JobmanScheduler'")
    if cfg.bucket and not BUCKET.match(cfg.bucket):
        raise t.fail("bucket", "an S3 bucket name (3-63 lower-case letters, digits, dots, hyphens)")
    t.finish()
    return cfg


def parse_experiment(text: str, path: Path) -> Experiment:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    top = _Table(path, "", raw)
    name = top.get("name", str, required=True)
    if len(name) > MAX_EXPERIMENT_NAME or not SAGEMAKER_NAME.match(name):
        raise top.fail(
            "name", f"letters, digits and single hyphens, at most {MAX_EXPERIMENT_NAME} characters"
        )
    backend = top.get("backend", str, "local")
    if backend not in BACKENDS:
        raise top.fail("backend", "'local' or 'sagemaker'")
    experiment = Experiment(
        name=name,
        backend=backend,
        data=_data(top.table("data")),
        training=_training(top.table("training")),
        endpoint=_endpoint(top.table("endpoint")),
        evaluation=_evaluation(top.table("evaluation")),
        aws=_aws(top.table("aws")),
        path=path,
    )
    if backend == "sagemaker" and not experiment.aws.role_arn:
        raise ConfigError(f"{path}: aws.role_arn: missing; backend = 'sagemaker' needs an IAM role for SageMaker")
    if (backend == "sagemaker" and experiment.endpoint.ttl_enforcement == "schedule"
            and not experiment.aws.scheduler_role_arn):
        raise ConfigError(
            f"{path}: aws.scheduler_role_arn: missing; endpoint.ttl_enforcement = 'schedule' on 'sagemaker' needs "
            f"{SCHEDULER_ROLE_NEEDS}, or set endpoint.ttl_enforcement = 'gc'"
        )
    if "training" not in raw:
        raise ConfigError(f"{path}: [training]: missing; expected a table with [training.hyperparameters]")
    top.finish()
    return experiment


def load_experiment(path: str | Path) -> Experiment:
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{file}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{file}: cannot read: {exc}") from None
    return parse_experiment(text, file)
