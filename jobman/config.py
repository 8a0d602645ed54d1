"""experiment.toml -> frozen dataclasses. Every error names the file and the key and says what was expected."""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
import tomllib
from collections.abc import Collection
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from jobman import xgboost_hyperparameters
from jobman.backends.names import BackendName
from jobman.durations import parse_duration_s
from jobman.echo import dotted, echo, one_line
from jobman.errors import ConfigError
from jobman.images import versions as xgboost_versions
from jobman.sweep_config import SweepConfig, parse_sweep

SAGEMAKER_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
MAX_EXPERIMENT_NAME = 40  # leaves room for "-r<run>-<kind>" within SageMaker's 63 characters
INVOKE_BODY_LIMIT = 6_291_456  # SageMaker refuses larger InvokeEndpoint bodies


BACKENDS = tuple(b.value for b in BackendName)
BUILTIN_SOURCES = ("boston",)
ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/.+$")
BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
TTL_ENFORCEMENTS = ("schedule", "gc")
EVALUATION_MODES = ("endpoint", "transform")
MIB = 1_048_576  # SageMaker's "MB" in payload limits
TRANSFORM_PAYLOAD_LIMIT_MB = 100  # MaxPayloadInMB, and MaxConcurrentTransforms x MaxPayloadInMB, are at most this
SCHEDULER_ROLE_NEEDS = (
    "a role that trusts scheduler.amazonaws.com and may sagemaker:DeleteEndpoint, sagemaker:DeleteEndpointConfig, "
    "sagemaker:DeleteModel and sagemaker:StopTransformJob (README: 'TTL enforcement')"
)

MAX_SEED = 2**32 - 1  # scikit-learn's random_state range
DURATION = "a duration like '90s', '30m', '1h' or '2d'"
HYPERPARAMETERS = "training.hyperparameters"


@dataclass(frozen=True)
class DurationRange:
    least_s: float
    most_s: float
    words: str  # how an error message states the range


MAX_RUNTIME_RANGE = DurationRange(  # MaxRuntimeInSeconds is a whole number of seconds, at least 1
    1, 28 * 86400, "from 1s to 28d (SageMaker's MaxRuntimeInSeconds is at most 2,419,200 seconds)"
)
TTL_RANGE = DurationRange(0, 365 * 86400, "of at most 365d")
WAIT_TIMEOUT_RANGE = DurationRange(0, 7 * 86400, "of at most 7d")
TRANSFORM_TIMEOUT_RANGE = DurationRange(1, 7 * 86400, "from 1s to 7d")

# Every key each table may hold ("" is the top level; hyperparameters are the algorithm's own table).
# All keys are checked before any value, so that a typo is reported as itself, not as the key it hides.
TABLE_KEYS: dict[str, tuple[str, ...]] = {
    "": ("name", "backend", "data", "training", "endpoint", "evaluation", "aws", "sweep"),
    "data": ("source", "target", "test_size", "validation_size", "seed"),
    "training": ("algorithm", "algorithm_version", "instance_type", "instance_count", "volume_size_gb", "max_runtime",
                 "hyperparameters"),
    "endpoint": ("instance_type", "initial_instance_count", "keep", "ttl", "ttl_enforcement", "max_cost_usd",
                 "wait_timeout"),
    "evaluation": ("mode", "max_payload_bytes", "max_rows_per_chunk", "concurrency", "output_dir",
                   "transform_instance_type", "transform_instance_count", "max_concurrent_transforms",
                   "transform_timeout"),
    "aws": ("region", "role_arn", "bucket", "prefix", "profile", "scheduler_role_arn"),
    "sweep": ("strategy", "max_trials", "max_parallel", "objective", "direction", "seed", "parameters"),
}

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
    mode: str = "endpoint"  # "endpoint": deploy and invoke; "transform": a Batch Transform job, no endpoint
    transform_instance_type: str = "ml.m4.xlarge"
    transform_instance_count: int = 1
    max_concurrent_transforms: int = 4  # requests in flight to each transform instance
    transform_timeout_s: float = 3600.0  # past it, the transform job is stopped

    @property
    def max_payload_mb(self) -> int:
        """MaxPayloadInMB: max_payload_bytes in whole MiB, at least 1, so a transform batch is no larger."""
        return max(1, self.max_payload_bytes // MIB)


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
    sweep: SweepConfig | None = None  # a hyperparameter search instead of one training job

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
        try:
            return (self.path.parent / self.data.source).resolve()
        except (OSError, RuntimeError, ValueError) as exc:  # RuntimeError: a symlink loop; ValueError: a NUL byte
            raise ConfigError(f"{self.path}: data.source: cannot resolve {echo(self.data.source)}: {exc}") from None


def _check_keys(file: Path, raw: Any, prefix: str = "") -> None:
    """Refuse the first unknown key (in file order, at every table level), naming the closest valid one."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{file}: {prefix}: expected a table, got {echo(raw)}")
    if prefix == HYPERPARAMETERS:
        known: Collection[str] = xgboost_hyperparameters.SPEC
        otherwise = "expected a hyperparameter of the built-in XGBoost algorithm"
    else:
        known = TABLE_KEYS[prefix]
        otherwise = f"expected one of {', '.join(known)}"
    for key in raw:
        if key not in known and not (prefix == HYPERPARAMETERS and xgboost_hyperparameters.is_known(key)):
            closest = difflib.get_close_matches(key.lower(), known, n=1)
            hint = f"did you mean {closest[0]!r}?" if closest else otherwise
            raise ConfigError(f"{file}: {dotted(prefix, key)}: unknown key; {hint}")
    for key, value in raw.items():
        table = f"{prefix}.{key}" if prefix else key
        if table in TABLE_KEYS or table == HYPERPARAMETERS:
            _check_keys(file, value, table)


class Table:
    """One TOML table being read; its keys were checked against TABLE_KEYS before."""

    def __init__(self, file: Path, prefix: str, raw: dict[str, Any]) -> None:
        self.file, self.prefix, self.raw = file, prefix, raw

    def key(self, name: str) -> str:
        return f"{self.prefix}.{name}" if self.prefix else name

    def fail(self, name: str, expected: str) -> ConfigError:
        return ConfigError(f"{self.file}: {self.key(name)}: expected {expected}, got {echo(self.raw.get(name))}")

    def get(self, name: str, kind: type[T], default: T | None = None, *, required: bool = False) -> T:
        assert name in TABLE_KEYS[self.prefix], f"{self.key(name)} is read but not in TABLE_KEYS"
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

    def table(self, name: str) -> Table:
        return Table(self.file, self.key(name), self.raw.get(name, {}))


def _describe(kind: type) -> str:
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false", dict: "a table"}.get(
        kind, kind.__name__
    )


def _positive(t: Table, name: str, value: float) -> None:
    if value <= 0:
        raise t.fail(name, "a positive number")


def _fraction(t: Table, name: str, value: float) -> None:
    if not 0 < value < 1:
        raise t.fail(name, "a number between 0 and 1 (exclusive)")


def _duration(t: Table, name: str, default: float, allowed: DurationRange) -> float:
    if name not in t.raw:
        return default
    try:
        seconds = parse_duration_s(t.raw[name])
    except ValueError:
        seconds = None
    if seconds is None or not allowed.least_s <= seconds <= allowed.most_s:
        raise t.fail(name, f"{DURATION} {allowed.words}")
    return seconds


INSTANCE_TYPE = re.compile(r"(ml|local)\.[a-z0-9-]+\.[a-z0-9]+")
INSTANCE_TYPE_WORDS = "a SageMaker instance type like 'ml.m5.xlarge'"


def _instance_type(t: Table, name: str, default: str) -> str:
    value = t.get(name, str, default)
    if not INSTANCE_TYPE.fullmatch(value):
        raise t.fail(name, INSTANCE_TYPE_WORDS)
    return value


def check_instance_type(value: str, where: str) -> None:
    """The same check for an instance type given on the command line."""
    if not INSTANCE_TYPE.fullmatch(value):
        raise ConfigError(f"{where}: expected {INSTANCE_TYPE_WORDS}, got {echo(value)}")


def _hyperparameters(t: Table) -> dict[str, str]:
    """The values as SageMaker passes them (strings), checked against the algorithm's own table: a value the
    training job would refuse is refused here, before any job exists."""
    out: dict[str, str] = {}
    for key, value in t.raw.items():
        if isinstance(value, bool):
            out[key] = "true" if value else "false"
        elif isinstance(value, int | float | str):
            out[key] = str(value)
        else:
            raise t.fail(key, "a string, number or boolean")
        if len(out[key]) > xgboost_hyperparameters.MAX_VALUE_CHARS:
            raise t.fail(key, f"a value of at most {xgboost_hyperparameters.MAX_VALUE_CHARS:,} characters "
                              "(SageMaker's limit)")
    try:
        xgboost_hyperparameters.parse_hyperparameters(out)
    except xgboost_hyperparameters.HyperparameterError as exc:
        if exc.name in out:
            raise t.fail(exc.name, exc.expected) from None
        # A required one: num_round always, num_class with a multi-class objective.
        raise ConfigError(f"{t.file}: {t.key(exc.name)}: missing; expected {exc.expected}") from None
    return out


def _data(t: Table) -> DataConfig:
    data = DataConfig(
        source=t.get("source", str, "boston"),
        target=t.get("target", str, "MEDV"),
        test_size=t.get("test_size", float, 0.33),
        validation_size=t.get("validation_size", float, 0.33),
        seed=t.get("seed", int, 0),
    )
    _fraction(t, "test_size", data.test_size)
    _fraction(t, "validation_size", data.validation_size)
    if not 0 <= data.seed <= MAX_SEED:
        raise t.fail("seed", f"an integer from 0 to {MAX_SEED} (2**32 - 1)")
    if not data.source:
        raise t.fail("source", "'boston' or a path to a CSV file")
    return data


def _training(t: Table) -> TrainingConfig:
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
        max_runtime_s=_duration(t, "max_runtime", 86400.0, MAX_RUNTIME_RANGE),
        hyperparameters=_hyperparameters(t.table("hyperparameters")),
    )
    _positive(t, "instance_count", cfg.instance_count)
    _positive(t, "volume_size_gb", cfg.volume_size_gb)
    return cfg


def _endpoint(t: Table) -> EndpointConfig:
    cfg = EndpointConfig(
        instance_type=_instance_type(t, "instance_type", "ml.m4.xlarge"),
        initial_instance_count=t.get("initial_instance_count", int, 1),
        keep=t.get("keep", bool, False),
        ttl_s=_duration(t, "ttl", 3600.0, TTL_RANGE),
        wait_timeout_s=_duration(t, "wait_timeout", 1800.0, WAIT_TIMEOUT_RANGE),
        ttl_enforcement=t.get("ttl_enforcement", str, "schedule"),
        max_cost_usd=t.get("max_cost_usd", float, None),
    )
    _positive(t, "initial_instance_count", cfg.initial_instance_count)
    if cfg.ttl_enforcement not in TTL_ENFORCEMENTS:
        raise t.fail("ttl_enforcement", "'schedule' (server-side schedules delete the endpoint) or 'gc'")
    if cfg.max_cost_usd is not None and not (0 <= cfg.max_cost_usd < float("inf")):
        raise t.fail("max_cost_usd", "a finite number of US dollars, at least 0")
    return cfg


def _evaluation(t: Table) -> EvaluationConfig:
    cfg = EvaluationConfig(
        max_payload_bytes=t.get("max_payload_bytes", int, 5_000_000),
        max_rows_per_chunk=t.get("max_rows_per_chunk", int, None),
        concurrency=t.get("concurrency", int, 8),
        output_dir=t.get("output_dir", str, "jobman-output"),
        mode=t.get("mode", str, "endpoint"),
        transform_instance_type=_instance_type(t, "transform_instance_type", "ml.m4.xlarge"),
        transform_instance_count=t.get("transform_instance_count", int, 1),
        max_concurrent_transforms=t.get("max_concurrent_transforms", int, 4),
        transform_timeout_s=_duration(t, "transform_timeout", 3600.0, TRANSFORM_TIMEOUT_RANGE),
    )
    if cfg.mode not in EVALUATION_MODES:
        raise t.fail("mode", "'endpoint' (deploy an endpoint and invoke it) or 'transform' (a Batch Transform job)")
    _positive(t, "transform_instance_count", cfg.transform_instance_count)
    if not 0 < cfg.max_payload_bytes <= INVOKE_BODY_LIMIT:  # before the transform limit that derives from it
        raise t.fail("max_payload_bytes", f"a positive integer of at most {INVOKE_BODY_LIMIT} (SageMaker's limit)")
    most = TRANSFORM_PAYLOAD_LIMIT_MB // cfg.max_payload_mb
    if not 0 < cfg.max_concurrent_transforms <= most:
        raise t.fail("max_concurrent_transforms",
                     f"an integer from 1 to {most} (SageMaker's limit: max_concurrent_transforms x "
                     f"{cfg.max_payload_mb} MB payload, from max_payload_bytes, is at most "
                     f"{TRANSFORM_PAYLOAD_LIMIT_MB} MB)")
    if cfg.max_rows_per_chunk is not None:
        _positive(t, "max_rows_per_chunk", cfg.max_rows_per_chunk)
    if not 0 < cfg.concurrency <= 256:
        raise t.fail("concurrency", "an integer from 1 to 256")
    return cfg


def _aws(t: Table) -> AwsConfig:
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
    return cfg


def parse_experiment(text: str, path: Path) -> Experiment:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except RecursionError:  # tomllib recurses once per level of nesting
        raise ConfigError(f"{path}: not valid TOML for jobman: arrays or tables nested too deeply") from None
    _check_keys(path, raw)
    top = Table(path, "", raw)
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
    if "sweep" in raw:
        sweep = parse_sweep(top.table("sweep"), experiment.training.hyperparameters, MAX_SEED)
        experiment = replace(experiment, sweep=sweep)
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
    if experiment.endpoint.keep and experiment.evaluation.mode == "transform":
        raise ConfigError(f"{path}: endpoint.keep: evaluation.mode = 'transform' creates no endpoint to keep; "
                          "expected keep = false, or mode = 'endpoint'")
    return experiment


def check_output_dir(x: Experiment) -> None:
    """The run makes <output_dir>/<name>-r<N>/: refuse a place where no folder can be made, creating nothing.

    Walks up to the first path that exists: it must be a folder (or a link to one); a file, a broken link or a
    link loop on the way would make the run fail after training. A folder still to be made needs write access."""
    value = x.evaluation.output_dir
    where = f"{x.path}: evaluation.output_dir"
    target = Path(value)
    if "\0" in value:
        raise ConfigError(f"{where}: expected a folder path, got {echo(value)}")
    for folder in (target, *target.parents):
        try:
            if folder.is_dir():
                break
        except OSError as exc:  # is_dir() answers False for the usual errors; not for, say, a name too long
            raise ConfigError(f"{where}: {echo(value)} cannot be used as a folder: {exc.strerror}") from None
        if os.path.lexists(folder):
            raise ConfigError(
                f"{where}: expected a folder (or a path where one can be made), but {one_line(folder)} "
                "exists and is not a folder"
            )
    else:
        raise ConfigError(f"{where}: the current folder does not exist")
    if folder != target and not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(f"{where}: {echo(value)} cannot be made: no write access to {one_line(folder)}")


def load_experiment(path: str | Path) -> Experiment:
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{file}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{file}: cannot read: {exc}") from None
    return parse_experiment(text, file)
