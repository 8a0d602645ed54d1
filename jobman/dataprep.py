"""Load the table, split it as the classic notebook does, write the training files (sync, pure)."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import pandas as pd
from sklearn.model_selection import train_test_split

from jobman.config import Experiment
from jobman.errors import ConfigError


@dataclass(frozen=True)
class PreparedData:
    train_csv: Path  # target first, no header, no index: what the built-in algorithm reads
    validation_csv: Path
    test_features_csv: Path  # features only, no header: what the endpoint receives
    test_labels: list[float]
    feature_names: list[str]
    rows: dict[str, int]


def load_table(experiment: Experiment) -> pd.DataFrame:
    """The table named by [data].source, checked: target present, every feature numeric, no gaps."""
    source_key = f"{experiment.path}: data.source"
    path = experiment.data_path
    if path is None:
        with resources.files("jobman.data").joinpath("boston_house_prices.csv").open("rb") as fh:
            frame = pd.read_csv(fh, skiprows=1)  # line 1 is the original file's "506,13" banner
    else:
        if not path.is_file():
            raise ConfigError(f"{source_key}: no CSV file at {path}")
        try:
            frame = pd.read_csv(path)
        except (ValueError, OSError) as exc:
            raise ConfigError(f"{source_key}: cannot read {path} as CSV with a header row: {exc}") from None
    return _checked(frame, experiment)


def _checked(frame: pd.DataFrame, experiment: Experiment) -> pd.DataFrame:
    where = f"{experiment.path}: data"
    target = experiment.data.target
    if target not in frame.columns:
        columns = ", ".join(map(str, frame.columns))
        raise ConfigError(f"{where}.target: column {target!r} is not in the table (columns: {columns})")
    for column in frame.columns:
        if not pd.api.types.is_numeric_dtype(frame[column]) or pd.api.types.is_bool_dtype(frame[column]):
            raise ConfigError(f"{where}.source: column {column!r} is not numeric; expected numbers only")
        if frame[column].isna().any():
            raise ConfigError(f"{where}.source: column {column!r} has missing values; expected a number in every row")
    if len(frame) < 10:
        raise ConfigError(f"{where}.source: {len(frame)} rows; expected at least 10 to split")
    if len(frame.columns) < 2:
        raise ConfigError(f"{where}.source: expected at least one feature column besides {target!r}")
    return frame


def prepare(experiment: Experiment, frame: pd.DataFrame, out_dir: Path) -> PreparedData:
    """Test share first, then the validation share of the rest, both seeded, as the notebook does."""
    cfg = experiment.data
    features = frame.drop(columns=[cfg.target])
    target = frame[cfg.target]
    x_train, x_test, y_train, y_test = train_test_split(
        features, target, test_size=cfg.test_size, random_state=cfg.seed
    )
    x_train, x_val, y_train, y_val = train_test_split(
        x_train, y_train, test_size=cfg.validation_size, random_state=cfg.seed
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {name: out_dir / f"{name}.csv" for name in ("train", "validation", "test_features")}
    pd.concat([y_train, x_train], axis=1).to_csv(paths["train"], header=False, index=False)
    pd.concat([y_val, x_val], axis=1).to_csv(paths["validation"], header=False, index=False)
    x_test.to_csv(paths["test_features"], header=False, index=False)
    return PreparedData(
        train_csv=paths["train"],
        validation_csv=paths["validation"],
        test_features_csv=paths["test_features"],
        test_labels=[float(v) for v in y_test],
        feature_names=[str(c) for c in features.columns],
        rows={"train": len(x_train), "validation": len(x_val), "test": len(x_test)},
    )
