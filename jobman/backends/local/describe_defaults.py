"""Members SageMaker fills in its Describe answers although the create request may have left them out.

Callers read them without `.get` (the SageMaker Python SDK's `Estimator.attach` reads
`OutputDataConfig.KmsKeyId`, `TrainingAnalytics` reads `AlgorithmSpecification.MetricDefinitions`), so
an answer that merely echoes the request breaks them. Each function returns a filled copy; the stored
record is never changed.
"""

from __future__ import annotations

import copy
from typing import Any

# The evaluation metrics the built-in XGBoost algorithm publishes, for the `train` and `validation`
# channels; SageMaker lists them as the job's MetricDefinitions whatever eval_metric was chosen.
XGBOOST_METRICS = (
    "accuracy", "auc", "aucpr", "error", "f1", "gamma-deviance", "gamma-nloglik", "logloss", "mae", "map",
    "merror", "mlogloss", "mse", "ndcg", "poisson-nloglik", "r2", "rmse", "tweedie-nloglik",
)
_NUMBER = r"([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)"


def xgboost_metric_definitions() -> list[dict[str, str]]:
    """`{Name: "train:rmse", Regex: ...}` entries whose regexes match the algorithm's log lines."""
    return [
        {"Name": f"{channel}:{metric}", "Regex": f".*\\[[0-9]+\\].*#011{channel}-{metric}:{_NUMBER}.*"}
        for channel in ("train", "validation") for metric in XGBOOST_METRICS
    ]


def training_job(record: dict[str, Any], builtin: bool) -> dict[str, Any]:
    """The request members of DescribeTrainingJob, with SageMaker's defaults filled in."""
    answer = copy.deepcopy(record)
    spec = answer.setdefault("AlgorithmSpecification", {})
    spec.setdefault("TrainingInputMode", "File")
    spec.setdefault("EnableSageMakerMetricsTimeSeries", False)
    if builtin:
        spec.setdefault("MetricDefinitions", xgboost_metric_definitions())
    output = answer.setdefault("OutputDataConfig", {})
    output.setdefault("KmsKeyId", "")
    output.setdefault("CompressionType", "GZIP")
    answer.setdefault("ResourceConfig", {}).setdefault("InstanceCount", 1)
    answer.setdefault("StoppingCondition", {}).setdefault("MaxRuntimeInSeconds", 86400)
    answer.setdefault("HyperParameters", {})
    for channel in answer.get("InputDataConfig") or []:
        channel.setdefault("CompressionType", "None")
        channel.setdefault("RecordWrapperType", "None")
        source = (channel.get("DataSource") or {}).get("S3DataSource")
        if isinstance(source, dict):
            source.setdefault("S3DataDistributionType", "FullyReplicated")
    for flag in ("EnableNetworkIsolation", "EnableInterContainerTrafficEncryption", "EnableManagedSpotTraining"):
        answer.setdefault(flag, False)
    return answer


def model(answer: dict[str, Any]) -> dict[str, Any]:
    """DescribeModel: each container's Mode, and the network isolation flag."""
    answer = copy.deepcopy(answer)
    containers = ([answer["PrimaryContainer"]] if answer.get("PrimaryContainer") else []) + list(
        answer.get("Containers") or []
    )
    for container in containers:
        container.setdefault("Mode", "SingleModel")
    answer.setdefault("EnableNetworkIsolation", False)
    return answer


def endpoint_config(answer: dict[str, Any]) -> dict[str, Any]:
    """DescribeEndpointConfig: each variant's weight (1.0 unless given)."""
    answer = copy.deepcopy(answer)
    for variant in answer.get("ProductionVariants") or []:
        variant.setdefault("InitialVariantWeight", 1.0)
    return answer


def transform_job(record: dict[str, Any]) -> dict[str, Any]:
    """The request members of DescribeTransformJob, with SageMaker's defaults filled in."""
    answer = copy.deepcopy(record)
    transform_input = answer.setdefault("TransformInput", {})
    transform_input.setdefault("CompressionType", "None")
    transform_input.setdefault("SplitType", "None")
    output = answer.setdefault("TransformOutput", {})
    output.setdefault("AssembleWith", "None")
    output.setdefault("KmsKeyId", "")
    answer.setdefault("Environment", {})
    processing = answer.setdefault("DataProcessing", {})
    processing.setdefault("InputFilter", "$")
    processing.setdefault("OutputFilter", "$")
    processing.setdefault("JoinSource", "None")
    if "ModelClientConfig" in answer:
        answer["ModelClientConfig"].setdefault("InvocationsTimeoutInSeconds", 600)
        answer["ModelClientConfig"].setdefault("InvocationsMaxRetries", 3)
    return answer
