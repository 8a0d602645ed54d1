"""Load the table, split it as the classic notebook does, write the training files (sync, pure)."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from jobman.config import Experiment
from jobman.echo import cut, echo, one_line
from jobman.errors import ConfigError


@dataclass(frozen=True)
class PreparedData:
    train_csv: Path  # target first, no header, no index: what the built-in algorithm reads
    validation_csv: Path
    test_features_csv: Path  # features only, no header: what the endpoint receives
    test_labels: list[float]
    rows: dict[str, int]


@dataclass(frozen=True)
class Split:
    """The notebook's three shares of the table: features (x) and target (y) of each."""

    x_train: pd.DataFrame
    y_train: pd.Series
    x_val: pd.DataFrame
    y_val: pd.Series
    x_test: pd.DataFrame
    y_test: pd.Series


def load_table(experiment: Experiment) -> pd.DataFrame:
    """The table named by [data].source, checked: target present, every column numeric and finite."""
    source_key = f"{experiment.path}: data.source"
    path = experiment.data_path
    if path is None:
        with resources.files("jobman.data").joinpath("boston_house_prices.csv").open("rb") as fh:
            frame = pd.read_csv(fh, skiprows=1)  # line 1 is the original file's "506,13" banner
    else:
        try:
            is_file = path.is_file()
        except OSError as exc:  # is_file() answers False for the usual errors; not for, say, a name too long
            raise ConfigError(f"{source_key}: cannot use {echo(str(path))}: {exc.strerror}") from None
        if not is_file:
            raise ConfigError(f"{source_key}: no CSV file at {one_line(path)}")
        try:
            frame = pd.read_csv(path)
        except (ValueError, OSError) as exc:  # pandas' parser messages may end in a line feed: keep one line
            reason = " ".join(str(exc).split())
            raise ConfigError(
                f"{source_key}: cannot read {one_line(path)} as CSV with a header row: {reason}"
            ) from None
    return _checked(frame, experiment)


def _checked(frame: pd.DataFrame, experiment: Experiment) -> pd.DataFrame:
    where = f"{experiment.path}: data"
    target = experiment.data.target
    if target not in frame.columns:
        columns = cut(", ".join(map(repr, frame.columns)))
        raise ConfigError(f"{where}.target: column {echo(target)} is not in the table (columns: {columns})")
    for column in frame.columns:
        if not pd.api.types.is_numeric_dtype(frame[column]) or pd.api.types.is_bool_dtype(frame[column]):
            raise ConfigError(f"{where}.source: column {echo(column)} is not numeric; expected numbers only")
        values = frame[column].to_numpy(dtype=float)
        if not np.isfinite(values).all():  # NaN is a gap; inf would train, then break the metrics and the plot
            row = int(np.flatnonzero(~np.isfinite(values))[0])
            what = "a missing value" if np.isnan(values[row]) else f"the value {values[row]}"
            raise ConfigError(
                f"{where}.source: column {echo(column)} has {what} in data row {row + 1}; "
                "expected a finite number in every row"
            )
    if len(frame) < 10:
        raise ConfigError(f"{where}.source: {len(frame)} rows; expected at least 10 to split")
    if len(frame.columns) < 2:
        raise ConfigError(f"{where}.source: expected at least one feature column besides {echo(target)}")
    return frame


def split(experiment: Experiment, frame: pd.DataFrame) -> Split:
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
    return Split(x_train, y_train, x_val, y_val, x_test, y_test)


def headerless_csv(frame: pd.DataFrame) -> bytes:
    """The bytes of a training or test file: no header, no index. The one place their format is decided."""
    return frame.to_csv(header=False, index=False).encode()


def check_test_rows_fit(experiment: Experiment, frame: pd.DataFrame) -> None:
    """Refuse a max_payload_bytes that the longest test row the run would send cannot fit in (the invoker
    would fail on that row only after training and deploying)."""
    rows = headerless_csv(split(experiment, frame).x_test).splitlines(keepends=True)
    longest = max(map(len, rows), default=0)  # with its line end, as the invoker counts a row
    cap = experiment.evaluation.max_payload_bytes
    if longest > cap:
        raise ConfigError(
            f"{experiment.path}: evaluation.max_payload_bytes: expected at least {longest}, the size of the longest "
            f"test row the run sends (in bytes, with its line end), got {cap}"
        )


def prepare(experiment: Experiment, frame: pd.DataFrame, out_dir: Path) -> PreparedData:
    """Split the table and write the training files and the test features."""
    parts = split(experiment, frame)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {name: out_dir / f"{name}.csv" for name in ("train", "validation", "test_features")}
    paths["train"].write_bytes(headerless_csv(pd.concat([parts.y_train, parts.x_train], axis=1)))
    paths["validation"].write_bytes(headerless_csv(pd.concat([parts.y_val, parts.x_val], axis=1)))
    paths["test_features"].write_bytes(headerless_csv(parts.x_test))
    return PreparedData(
        train_csv=paths["train"],
        validation_csv=paths["validation"],
        test_features_csv=paths["test_features"],
        test_labels=[float(v) for v in parts.y_test],
        rows={"train": len(parts.x_train), "validation": len(parts.x_val), "test": len(parts.x_test)},
    )
