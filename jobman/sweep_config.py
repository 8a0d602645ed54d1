"""`[sweep]` in the experiment file: the search, checked against the algorithm's own hyperparameter table
before anything is created.

    [sweep]
    strategy = "tpe"          # "random", "grid" or "tpe"
    max_trials = 24
    max_parallel = 4
    objective = "validation:rmse"
    direction = "minimize"
    seed = 0
    [sweep.parameters]
    eta = { low = 0.05, high = 0.5, log = true }
    max_depth = { low = 3, high = 10, type = "int" }
    subsample = [0.6, 0.8, 1.0]          # a list is a categorical choice
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from jobman import xgboost_hyperparameters
from jobman.echo import dotted, echo
from jobman.errors import ConfigError

if TYPE_CHECKING:  # config.py reads the file and hands `[sweep]` here
    from jobman.config import Table

STRATEGIES = ("random", "grid", "tpe")
DIRECTIONS = ("minimize", "maximize")
CHANNELS = ("train", "validation")  # the channels a jobman training job has
MAX_TRIALS = 1000
MAX_PARALLEL = 100
RANGE_KEYS = ("low", "high", "log", "type", "step")
PARAMETERS = "sweep.parameters"


@dataclass(frozen=True)
class Parameter:
    """One swept hyperparameter: a range (`low`..`high`, int or float, maybe log-scaled, maybe stepped) or a
    list of choices."""

    name: str
    low: float | None = None
    high: float | None = None
    integer: bool = False
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] | None = None

    def grid_size(self) -> int:
        """How many values a grid takes, counted without making them (a tiny step must not fill memory)."""
        if self.choices is not None:
            return len(self.choices)
        assert self.low is not None and self.high is not None and self.step is not None
        steps = (self.high - self.low) / self.step + 1e-9  # inf for a subnormal step: counted as 1e18, refused
        return int(math.floor(min(steps, 1e18))) + 1

    def grid_values(self) -> list[Any]:
        """Every value a grid takes: the choices, or the range walked by its step."""
        if self.choices is not None:
            return list(self.choices)
        assert self.low is not None and self.step is not None
        values = [self.low + i * self.step for i in range(self.grid_size())]
        return [int(round(v)) for v in values] if self.integer else [round(v, 12) for v in values]


def grid_size(parameters: tuple[Parameter, ...]) -> int:
    """The number of points of the grid over `parameters`."""
    return math.prod(p.grid_size() for p in parameters)


@dataclass(frozen=True)
class SweepConfig:
    strategy: str
    max_trials: int
    max_parallel: int
    objective: str
    direction: str
    seed: int
    parameters: tuple[Parameter, ...]

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.parameters]


def hyperparameter_text(value: Any) -> str:
    """A value as SageMaker passes it: a string (true/false for booleans, Python's shortest repr for floats)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def parse_sweep(t: Table, fixed: dict[str, str], seed_limit: int) -> SweepConfig:
    """The `[sweep]` table, every range checked against the built-in algorithm's table with the fixed
    hyperparameters (from `[training.hyperparameters]`) beside it."""
    file = str(t.file)
    strategy = t.get("strategy", str, "tpe")
    if strategy not in STRATEGIES:
        raise t.fail("strategy", "'random', 'grid' or 'tpe' (Bayesian), Optuna's samplers")
    max_trials = t.get("max_trials", int, 20)
    if not 1 <= max_trials <= MAX_TRIALS:
        raise t.fail("max_trials", f"an integer from 1 to {MAX_TRIALS}")
    max_parallel = t.get("max_parallel", int, 4)
    if not 1 <= max_parallel <= MAX_PARALLEL:
        raise t.fail("max_parallel", f"an integer from 1 to {MAX_PARALLEL}")
    direction = t.get("direction", str, "minimize")
    if direction not in DIRECTIONS:
        raise t.fail("direction", "'minimize' or 'maximize'")
    seed = t.get("seed", int, 0)
    if not 0 <= seed <= seed_limit:
        raise t.fail("seed", f"an integer from 0 to {seed_limit}")
    table = t.raw.get("parameters")
    if not isinstance(table, dict) or not table:
        raise ConfigError(f"{file}: {PARAMETERS}: missing; expected a table of the hyperparameters to search, "
                          "like eta = { low = 0.05, high = 0.5, log = true }")
    parameters = tuple(_parameter(file, name, spec, strategy) for name, spec in table.items())
    _check_against_algorithm(file, parameters, fixed)
    objective = t.get("objective", str, "validation:rmse")
    _check_objective(file, objective, parameters, fixed)
    if strategy == "grid":
        size = grid_size(parameters)
        if size > MAX_TRIALS * 10:
            raise ConfigError(f"{file}: {PARAMETERS}: expected a grid of at most {MAX_TRIALS * 10:,} points, "
                              f"not {size:,}")
    return SweepConfig(strategy, max_trials, max_parallel, objective, direction, seed, parameters)


def _parameter(file: str, name: str, spec: Any, strategy: str) -> Parameter:
    key = f"{file}: {dotted(PARAMETERS, name)}"
    if not xgboost_hyperparameters.is_known(name) or name.startswith("_"):
        raise ConfigError(f"{key}: unknown key; expected a hyperparameter of the built-in XGBoost algorithm")
    if isinstance(spec, list):
        if not spec or not all(isinstance(v, str | int | float | bool) for v in spec):
            raise ConfigError(f"{key}: expected a non-empty list of strings, numbers or booleans (a choice)")
        if len({hyperparameter_text(v) for v in spec}) != len(spec):
            raise ConfigError(f"{key}: expected a list of distinct choices, got {echo(spec)}")
        return Parameter(name, choices=tuple(spec))
    if not isinstance(spec, dict):
        raise ConfigError(f"{key}: expected a range like {{ low = 1, high = 10 }} or a list of choices, "
                          f"got {echo(spec)}")
    unknown = [k for k in spec if k not in RANGE_KEYS]
    if unknown:
        raise ConfigError(f"{file}: {dotted(dotted(PARAMETERS, name), unknown[0])}: unknown key; "
                          f"expected one of {', '.join(RANGE_KEYS)}")
    low, high = spec.get("low"), spec.get("high")
    for bound, value in (("low", low), ("high", high)):
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ConfigError(f"{key}.{bound}: expected a finite number, got {echo(value)}")
    assert isinstance(low, int | float) and isinstance(high, int | float)
    if low > high:
        raise ConfigError(f"{key}: expected low <= high, got low = {echo(low)}, high = {echo(high)}")
    kind = spec.get("type", "int" if isinstance(low, int) and isinstance(high, int) and "log" not in spec else "float")
    if kind not in ("int", "float"):
        raise ConfigError(f"{key}.type: expected 'int' or 'float', got {echo(kind)}")
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise ConfigError(f"{key}.log: expected true or false, got {echo(log)}")
    if log and low <= 0:
        raise ConfigError(f"{key}.low: expected a positive number with log = true, got {echo(low)}")
    step = spec.get("step")
    if step is not None and (isinstance(step, bool) or not isinstance(step, int | float) or not math.isfinite(step)
                             or step <= 0):
        raise ConfigError(f"{key}.step: expected a positive finite number, got {echo(step)}")
    if step is not None and log:
        raise ConfigError(f"{key}.step: expected no step with log = true (Optuna does not step a log scale)")
    integer = kind == "int"
    if integer and (low != int(low) or high != int(high) or (step is not None and step != int(step))):
        raise ConfigError(f"{key}: expected whole numbers for low, high and step with type = 'int'")
    if strategy == "grid" and step is None and not integer:
        raise ConfigError(f"{key}.step: missing; a grid over a float range needs a step (or give a list)")
    if step is None and integer:
        step = 1
    return Parameter(name, float(low), float(high), integer, log, None if step is None else float(step))


def _check_against_algorithm(file: str, parameters: tuple[Parameter, ...], fixed: dict[str, str]) -> None:
    """Every value a parameter can take must pass the algorithm's own check, beside the fixed ones (a swept
    value replaces a fixed one of the same name): the ends of a range (and a point between, which catches a
    float range over an integer hyperparameter) or each choice."""
    for p in parameters:
        if p.choices is not None:
            samples = list(p.choices)
        else:
            assert p.low is not None and p.high is not None
            samples = [int(p.low), int(p.high)] if p.integer else [p.low, p.high, p.low + (p.high - p.low) * 0.377]
        for value in samples:
            try:
                xgboost_hyperparameters.parse_hyperparameters({**fixed, p.name: hyperparameter_text(value)})
            except xgboost_hyperparameters.HyperparameterError as exc:
                if exc.name != p.name:
                    continue  # another hyperparameter's problem: the fixed table is checked on its own
                hint = " (it takes integers: set type = 'int')" if "integer" in exc.expected and not p.integer else ""
                raise ConfigError(f"{file}: {PARAMETERS}.{p.name}: the value {hyperparameter_text(value)} "
                                  f"is refused by the algorithm; expected {exc.expected}{hint}") from None


def _check_objective(file: str, objective: str, parameters: tuple[Parameter, ...], fixed: dict[str, str]) -> None:
    channel, _, metric = objective.partition(":")
    if channel not in CHANNELS or not metric:
        raise ConfigError(f"{file}: sweep.objective: expected '<channel>:<metric>' with channel train or "
                          f"validation, like 'validation:rmse', got {echo(objective)}")
    swept = {p.name for p in parameters}
    if "eval_metric" in swept or "objective" in swept:
        return  # the metrics vary by trial; a trial that does not emit it fails on its own
    emitted = xgboost_hyperparameters.emitted_metrics(fixed)
    if metric not in emitted:
        listed = ", ".join(f"{channel}:{m}" for m in emitted)
        raise ConfigError(f"{file}: sweep.objective: the training jobs emit {listed}, not {echo(objective)}; "
                          "expected one of those, or set eval_metric")
