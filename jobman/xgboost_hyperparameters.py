"""The built-in XGBoost algorithm's hyperparameters: names, types and ranges, as SageMaker documents them.

A shared fact: the local cloud's training worker and the controller's config check read this one table.
SageMaker passes every value as a string. The algorithm checks them before it trains and fails the
job with a ClientError naming the first bad one; `parse_hyperparameters` does the same and returns
what `xgboost.train` needs. Each error also says, apart from the message, which name was bad and what
was expected, so that the controller can refuse the experiment file before any job exists.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

MAX_VALUE_CHARS = 2500  # CreateTrainingJob's limit on one value (botocore's HyperParameterValue shape)
_INTERNAL_PREFIXES = ("_", "sagemaker_")  # keys SageMaker itself adds; the algorithm ignores them


class HyperparameterError(ValueError):
    """A bad hyperparameter; the message is the job's FailureReason, `name` the culprit, `expected` what would do."""

    def __init__(self, message: str, *, name: str, expected: str) -> None:
        super().__init__(message)
        self.name = name
        self.expected = expected


@dataclass(frozen=True)
class TrainingParams:
    num_round: int
    early_stopping_rounds: int | None
    csv_weights: bool
    booster_params: dict[str, Any]  # for xgboost.train
    notes: list[str] = field(default_factory=list)  # log lines about what was translated or ignored


Parser = Callable[[str, str], Any]


def _number(kind: type, low: float | None = None, high: float | None = None, *, open_low: bool = False,
            open_high: bool = False) -> Parser:
    noun = "an integer" if kind is int else "a number"
    lo = "-inf" if low is None else f"{low:g}"
    hi = "inf" if high is None else f"{high:g}"
    interval = f"{'(' if open_low or low is None else '['}{lo}, {hi}{')' if open_high or high is None else ']'}"
    in_range = noun if low is None and high is None else f"{noun} in {interval}"

    def parse(name: str, text: str) -> Any:
        try:
            value = kind(float(text)) if kind is int and re.fullmatch(r"\s*-?\d+(\.0*)?\s*", text) else kind(text)
        except (TypeError, ValueError, OverflowError):
            raise _bad(name, f"value {text!r} is not {noun}", in_range) from None
        if kind is float and not math.isfinite(value):
            raise _bad(name, f"value {text!r} is not a finite number", in_range)
        below = low is not None and (value <= low if open_low else value < low)
        above = high is not None and (value >= high if open_high else value > high)
        if below or above:
            raise _bad(name, f"value {text} is out of range {interval}", in_range)
        return value

    return parse


def _bad(name: str, problem: str, expected: str) -> HyperparameterError:
    return HyperparameterError(f"ClientError: Hyperparameter {name}: {problem}", name=name, expected=expected)


def _choice(*options: str) -> Parser:
    one_of = f"one of {', '.join(options)}"

    def parse(name: str, text: str) -> str:
        if text not in options:
            raise _bad(name, f"value {text!r} is not {one_of}", one_of)
        return text

    return parse


def _text(name: str, text: str) -> str:
    return text


def _bool(name: str, text: str) -> bool:
    lowered = text.strip().lower()
    if lowered not in ("true", "false", "1", "0"):
        raise _bad(name, f"value {text!r} is not true or false", "true or false")
    return lowered in ("true", "1")


_METRIC = re.compile(
    r"^(rmse|rmsle|mae|mape|mphe|logloss|error(@[0-9.]+)?|merror|mlogloss|auc|aucpr|pre(@\d+)?|ndcg(@\d+)?-?"
    r"|map(@\d+)?-?|poisson-nloglik|gamma-nloglik|cox-nloglik|gamma-deviance|tweedie-nloglik(@[0-9.]+)?"
    r"|aft-nloglik|interval-regression-accuracy)$"
)


def _metrics(name: str, text: str) -> list[str]:
    metrics = [m.strip() for m in text.split(",") if m.strip()]
    expected = "XGBoost evaluation metrics separated by commas, like 'rmse' or 'rmse,mae'"
    for metric in metrics:
        if not _METRIC.match(metric):
            raise _bad(name, f"metric {metric!r} is not supported by the local backend", expected)
    if not metrics:
        raise _bad(name, f"value {text!r} names no metric", expected)
    return metrics


OBJECTIVES = (
    "reg:linear", "reg:squarederror", "reg:squaredlogerror", "reg:logistic", "reg:pseudohubererror",
    "reg:absoluteerror", "reg:quantileerror", "reg:gamma", "reg:tweedie", "binary:logistic", "binary:logitraw",
    "binary:hinge", "count:poisson", "survival:cox", "survival:aft", "multi:softmax", "multi:softprob",
    "rank:pairwise", "rank:ndcg", "rank:map",
)

# name -> parser; the set the built-in algorithm accepts (SageMaker's XGBoost hyperparameter table).
SPEC: dict[str, Parser] = {
    "num_round": _number(int, 1),
    "num_class": _number(int, 1),
    "early_stopping_rounds": _number(int, 1),
    "csv_weights": _choice("0", "1"),
    "objective": _choice(*OBJECTIVES),
    "eval_metric": _metrics,
    "booster": _choice("gbtree", "gblinear", "dart"),
    "verbosity": _choice("0", "1", "2", "3"),
    "silent": _choice("0", "1"),
    "nthread": _number(int, 1),
    "eta": _number(float, 0, 1),
    "gamma": _number(float, 0),
    "max_depth": _number(int, 0),
    "min_child_weight": _number(float, 0),
    "max_delta_step": _number(float, 0),
    "subsample": _number(float, 0, 1, open_low=True),
    "sampling_method": _choice("uniform", "gradient_based"),
    "colsample_bytree": _number(float, 0, 1, open_low=True),
    "colsample_bylevel": _number(float, 0, 1, open_low=True),
    "colsample_bynode": _number(float, 0, 1, open_low=True),
    "lambda": _number(float, 0),
    "alpha": _number(float, 0),
    "tree_method": _choice("auto", "exact", "approx", "hist", "gpu_hist"),
    "sketch_eps": _number(float, 0, 1, open_low=True, open_high=True),
    "scale_pos_weight": _number(float, 0, open_low=True),
    "updater": _text,
    "refresh_leaf": _choice("0", "1"),
    "process_type": _choice("default", "update"),
    "grow_policy": _choice("depthwise", "lossguide"),
    "max_leaves": _number(int, 0),
    "max_bin": _number(int, 2),
    "max_cat_to_onehot": _number(int, 1),
    "num_parallel_tree": _number(int, 1),
    "sample_type": _choice("uniform", "weighted"),
    "normalize_type": _choice("tree", "forest"),
    "rate_drop": _number(float, 0, 1),
    "one_drop": _choice("0", "1"),
    "skip_drop": _number(float, 0, 1),
    "lambda_bias": _number(float, 0, 1),
    "tweedie_variance_power": _number(float, 1, 2, open_low=True, open_high=True),
    "huber_slope": _number(float, 0, open_low=True),
    "quantile_alpha": _text,
    "aft_loss_distribution": _choice("normal", "logistic", "extreme"),
    "aft_loss_distribution_scale": _number(float, 0, open_low=True),
    "base_score": _number(float),
    "seed": _number(int),
    "seed_per_iteration": _bool,
    "interaction_constraints": _text,
    "monotone_constraints": _text,
    "deterministic_histogram": _bool,
    "single_precision_histogram": _bool,
    "save_model_on_termination": _bool,
    "prob_buffer_row": _number(float, 0),
    "use_dask_gpu_training": _bool,
    "max_cached_hist_node": _number(int, 1),
}
# Accepted for compatibility but meaningless to xgboost here: checked, then not passed on.
_NOT_PASSED = frozenset({
    "num_round", "early_stopping_rounds", "csv_weights", "silent", "lambda_bias", "deterministic_histogram",
    "single_precision_histogram", "save_model_on_termination", "prob_buffer_row", "use_dask_gpu_training",
})
_MULTICLASS = ("multi:softmax", "multi:softprob")


def is_known(name: str) -> bool:
    """A name the algorithm accepts: one of its hyperparameters, or a key SageMaker adds itself."""
    return name in SPEC or name.startswith(_INTERNAL_PREFIXES)


# The metric XGBoost evaluates when eval_metric is not set, by objective (its documentation's defaults).
DEFAULT_METRIC = {
    "reg:linear": "rmse", "reg:squarederror": "rmse", "reg:squaredlogerror": "rmsle", "reg:logistic": "rmse",
    "reg:pseudohubererror": "mphe", "reg:absoluteerror": "mae", "reg:quantileerror": "quantile",
    "reg:gamma": "gamma-nloglik", "reg:tweedie": "tweedie-nloglik@1.5", "binary:logistic": "logloss",
    "binary:logitraw": "logloss", "binary:hinge": "error", "count:poisson": "poisson-nloglik",
    "survival:cox": "cox-nloglik", "survival:aft": "aft-nloglik", "multi:softmax": "mlogloss",
    "multi:softprob": "mlogloss", "rank:pairwise": "map", "rank:ndcg": "ndcg", "rank:map": "map",
}


def emitted_metrics(raw: Mapping[str, str]) -> list[str]:
    """The metrics a training job with these hyperparameters reports per channel (e.g. `validation:<m>`)."""
    if raw.get("eval_metric"):
        return [m.strip() for m in raw["eval_metric"].split(",") if m.strip()]
    return [DEFAULT_METRIC.get(raw.get("objective", "reg:squarederror"), "rmse")]


def parse_hyperparameters(raw: Mapping[str, Any]) -> TrainingParams:
    """Check SageMaker-style string hyperparameters and translate them for `xgboost.train`."""
    unknown = [k for k in raw if not is_known(k)]
    if unknown:
        raise HyperparameterError(
            f"ClientError: Additional hyperparameters are not allowed ({', '.join(repr(k) for k in sorted(unknown))} "
            f"{'was' if len(unknown) == 1 else 'were'} unexpected)",
            name=unknown[0],  # the first in the caller's order, as a file lists them
            expected="a hyperparameter of the built-in XGBoost algorithm",
        )
    if "num_round" not in raw:
        raise HyperparameterError("ClientError: Missing required hyperparameter: num_round",
                                  name="num_round", expected="an integer in [1, inf)")
    values: dict[str, Any] = {}
    for name, text in raw.items():
        if name in SPEC:
            if not isinstance(text, str):
                raise _bad(name, f"value {text!r} is not a string", "a string")
            values[name] = SPEC[name](name, text.strip())
    return _translate(values)


def _translate(values: dict[str, Any]) -> TrainingParams:
    notes: list[str] = []
    params = {k: v for k, v in values.items() if k not in _NOT_PASSED}
    objective = params.get("objective")
    if objective == "reg:linear":
        params["objective"] = "reg:squarederror"
        notes.append("[WARNING] reg:linear is now deprecated in favor of reg:squarederror.")
    if objective in _MULTICLASS and "num_class" not in params:
        raise HyperparameterError(f"ClientError: Hyperparameter num_class is required for objective {objective}",
                                  name="num_class", expected=f"an integer in [1, inf) with objective {objective}")
    if params.get("tree_method") == "gpu_hist":
        params["tree_method"] = "hist"
        notes.append("tree_method gpu_hist runs as hist: the local backend has no GPU.")
    for name in ("verbosity", "csv_weights", "refresh_leaf", "one_drop"):
        if name in params:
            params[name] = int(params[name])
    params.setdefault("verbosity", 1)
    for name in sorted(values.keys() & {"silent", "lambda_bias", "prob_buffer_row"}):
        notes.append(f"Hyperparameter {name} is accepted for compatibility and has no effect.")
    return TrainingParams(
        num_round=values["num_round"],
        early_stopping_rounds=values.get("early_stopping_rounds"),
        csv_weights=values.get("csv_weights") == "1",
        booster_params=params,
        notes=notes,
    )
