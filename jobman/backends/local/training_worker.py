"""One training job, run as a detached process: `python -m jobman.backends.local.training_worker ...`.

It behaves like SageMaker's built-in XGBoost container: reads the `train` (and optional `validation`)
channel from the emulated S3, trains with the algorithm's hyperparameter semantics, logs each round as
CloudWatch events (`[0]#011train-rmse:...`), and uploads `model.tar.gz` holding `xgboost-model`. It
reports every step in its `status.json`; SIGTERM (StopTrainingJob) ends it as Stopped, and so does
StoppingCondition.MaxRuntimeInSeconds (as MaxRuntimeExceeded).
"""

from __future__ import annotations

import signal
import sys
import time
import traceback
import warnings
from pathlib import Path
from typing import Any

from jobman.backends.local import arns, supervisor
from jobman.backends.local.artifacts import pack_model
from jobman.backends.local.logstore import TRAINING_GROUP, LogStore
from jobman.backends.local.objects import ObjectError, ObjectStore, parse_s3_uri
from jobman.backends.local.store import Layout, RecordStore
from jobman.backends.local.training_state import JobFiles, advance, finish
from jobman.xgboost_hyperparameters import HyperparameterError, TrainingParams, parse_hyperparameters

CSV_TYPES = ("text/csv", "csv")
SMALL_DATA_CELLS = 1_000_000
LIBSVM_TYPES = ("libsvm", "text/libsvm", "text/x-libsvm", "application/x-libsvm")


class ClientError(Exception):
    """The job's input is at fault (SageMaker's "ClientError: ..." failure reasons)."""


class Interrupted(BaseException):
    """Raised from a signal handler; BaseException so that no `except Exception` swallows it."""

    def __init__(self, secondary: str) -> None:
        super().__init__(secondary)
        self.secondary = secondary


class TrainingRun:
    def __init__(self, layout: Layout, region: str, name: str) -> None:
        self.layout = layout
        self.region = region
        self.files = JobFiles(layout.training_dir(region, name))
        record = RecordStore(layout.resources(region, arns.TRAINING_JOB)).get(name)
        if record is None:
            raise SystemExit(f"no training job record for {name!r} in {region}")
        self.record: dict[str, Any] = record
        self.name = record["TrainingJobName"]
        self.objects = ObjectStore(layout)
        self.logs = LogStore(layout.logs / region)
        self.status = self.files.read_status() or {}
        self.started = time.time()
        self.stream = f"{self.name}/algo-1-{int(self.started)}"

    # --- status and log ---

    def step(self, primary: str, secondary: str, message: str | None = None) -> None:
        advance(self.status, primary, secondary, round(time.time(), 3), message)
        self.files.write_status(self.status)

    def finish(self, primary: str, secondary: str, reason: str | None = None) -> None:
        finish(self.status, primary, secondary, round(time.time(), 3), reason)
        self.files.write_status(self.status)

    def log(self, *lines: str) -> None:
        self.logs.append(TRAINING_GROUP, self.stream, [line.replace("\t", "#011") for line in lines])
        for line in lines:
            print(line, flush=True)

    # --- the job ---

    def run(self) -> None:
        self.logs.create_stream(TRAINING_GROUP, self.stream)
        self.status["TrainingStartTime"] = round(self.started, 3)
        if self.files.stop_request():  # stopped before this process got going
            raise Interrupted("Stopped")
        self._arm_max_runtime()
        image = self.record.get("AlgorithmSpecification", {}).get("TrainingImage", "")
        from jobman.images import is_builtin_xgboost

        if not is_builtin_xgboost(image):
            raise ClientError(
                "the local backend runs only the built-in XGBoost algorithm images "
                f"(see jobman.images.xgboost_image_uri); got {image or 'no TrainingImage'!r}"
            )
        params = parse_hyperparameters(self.record.get("HyperParameters") or {})
        self.step("InProgress", "Downloading")
        self.log(f"Arguments: train; hyperparameters: {self.record.get('HyperParameters') or {}}")
        train, validation = self._channels(params)
        self.step("InProgress", "Training")
        booster = self._train(params, train, validation)
        self.step("InProgress", "Uploading")
        uri = self._upload(booster)
        self.status["ModelArtifacts"] = {"S3ModelArtifacts": uri}
        self.finish("Completed", "Completed")
        self.log(f"Training job completed; model artifact at {uri}")

    def _arm_max_runtime(self) -> None:
        limit = (self.record.get("StoppingCondition") or {}).get("MaxRuntimeInSeconds")
        if isinstance(limit, int | float) and limit > 0:
            signal.signal(signal.SIGALRM, lambda *_: _raise(Interrupted("MaxRuntimeExceeded")))
            signal.setitimer(signal.ITIMER_REAL, float(limit))

    def _channels(self, params: TrainingParams) -> tuple[Any, Any | None]:
        configs = {c.get("ChannelName"): c for c in self.record.get("InputDataConfig") or []}
        if "train" not in configs:
            raise ClientError("Channel 'train' is required by the XGBoost algorithm")
        for extra in sorted(set(configs) - {"train", "validation"}):
            self.log(f"[WARNING] channel {extra!r} is not used by the XGBoost algorithm")
        train = self._read_channel("train", configs["train"], params)
        self.log(f"Train matrix has {train.num_row()} rows and {train.num_col()} columns")
        validation = None
        if "validation" in configs:
            validation = self._read_channel("validation", configs["validation"], params)
            self.log(f"Validation matrix has {validation.num_row()} rows")
            if validation.num_col() != train.num_col():
                raise ClientError(f"The validation channel has {validation.num_col()} feature columns; "
                                  f"the train channel has {train.num_col()}")
        return train, validation

    def _read_channel(self, name: str, config: dict[str, Any], params: TrainingParams) -> Any:
        """The channel's data as an xgboost DMatrix (target first in CSV; libsvm as the algorithm reads it)."""
        source = (config.get("DataSource") or {}).get("S3DataSource")
        if not source:
            raise ClientError(f"Channel {name!r}: the local backend reads only S3DataSource channels")
        if source.get("S3DataType", "S3Prefix") != "S3Prefix":
            raise ClientError(f"Channel {name!r}: S3DataType {source.get('S3DataType')} is not supported locally")
        uri = source.get("S3Uri", "")
        paths = self._channel_files(name, uri)
        content_type = (config.get("ContentType") or "libsvm").split(";")[0].strip().lower()
        compression = "gzip" if config.get("CompressionType") == "Gzip" else None
        if content_type in CSV_TYPES:
            return _read_csv(name, uri, paths, compression, params.csv_weights)
        if content_type in LIBSVM_TYPES:
            joined = self.files.folder / f"{name}.libsvm"
            return _read_libsvm(name, uri, paths, compression, joined, config.get("ContentType") is None)
        raise ClientError(f"Channel {name!r}: content type {config.get('ContentType')!r} is not supported locally "
                          "(use text/csv or libsvm)")

    def _channel_files(self, name: str, uri: str) -> list[Path]:
        try:
            bucket, prefix = parse_s3_uri(uri)
            keys = self.objects.list_keys(bucket, prefix)
            paths = [self.objects.object_path(bucket, k) for k in keys]
        except ObjectError as exc:
            raise ClientError(f"Channel {name!r}: cannot read {uri}: {exc.message}") from exc
        paths = [p for p in paths if p.stat().st_size > 0]
        if not paths:
            raise ClientError(f"Channel {name!r}: no data found under {uri}")
        return paths

    def _train(self, params: TrainingParams, dtrain: Any, dvalidation: Any | None) -> Any:
        import xgboost as xgb

        for note in params.notes:
            self.log(note)
        booster_params = dict(params.booster_params)
        if "nthread" not in booster_params and dtrain.num_row() * dtrain.num_col() < SMALL_DATA_CELLS:
            booster_params["nthread"] = 1  # threads cost more than they save on small data
        evals = [(dtrain, "train")] + ([(dvalidation, "validation")] if dvalidation is not None else [])
        monitor = _round_logger(self)
        try:
            booster = xgb.train(
                booster_params, dtrain, num_boost_round=params.num_round, evals=evals,
                early_stopping_rounds=params.early_stopping_rounds, callbacks=[monitor], verbose_eval=False,
            )
        except xgb.core.XGBoostError as exc:
            raise ClientError(f"XGBoost rejected the job: {str(exc).splitlines()[0]}") from exc
        self.status["FinalMetricDataList"] = monitor.final_metrics()
        if params.early_stopping_rounds and booster.attr("best_iteration") is not None:
            self.log(f"Best iteration: {booster.attr('best_iteration')}")
        return booster

    def _upload(self, booster: Any) -> str:
        output = (self.record.get("OutputDataConfig") or {}).get("S3OutputPath", "")
        bucket, prefix = parse_s3_uri(output)
        key = "/".join(filter(None, (prefix.strip("/"), self.name, "output", "model.tar.gz")))
        try:
            self.objects.put_bytes(bucket, key, pack_model(booster), "application/x-tar")
        except ObjectError as exc:
            raise ClientError(f"Could not upload the model to {output}: {exc.message}") from exc
        return f"s3://{bucket}/{key}"


def _round_logger(run: TrainingRun) -> Any:
    """An xgboost callback writing each round as the container does: `[3]\ttrain-rmse:...`."""
    import xgboost as xgb

    class RoundLogger(xgb.callback.TrainingCallback):
        def __init__(self) -> None:
            super().__init__()
            self.last: dict[str, float] = {}
            self.stamp = round(time.time(), 3)

        def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
            parts = [f"[{epoch}]"]
            values: dict[str, float] = {}
            for data, metrics in evals_log.items():
                for metric, history in metrics.items():
                    score = history[-1][0] if isinstance(history[-1], tuple) else history[-1]
                    text = f"{float(score):.5f}"
                    # SageMaker reads metrics from the log line, so the recorded value is the logged one.
                    values[f"{data}:{metric}"] = float(text)
                    parts.append(f"{data}-{metric}:{text}")
            run.log("\t".join(parts))
            self.stamp = round(time.time(), 3)
            self.last = values
            run.files.append_round(self.stamp, values)
            return False

        def final_metrics(self) -> list[dict[str, Any]]:
            """FinalMetricDataList as SageMaker fills it: the last value each metric's regex found in the log,
            one per metric and channel. With early stopping that is the last round's (best iteration +
            early_stopping_rounds), not the best round's, exactly as on SageMaker."""
            return [{"MetricName": k, "Value": v, "Timestamp": self.stamp} for k, v in self.last.items()]

    return RoundLogger()


def _read_csv(name: str, uri: str, paths: list[Path], compression: str | None, weighted: bool) -> Any:
    import numpy as np
    import pandas as pd
    import xgboost as xgb

    frames = []
    for path in paths:
        try:
            frame = pd.read_csv(path, header=None, dtype=np.float32, compression=compression, engine="c")
        except (ValueError, pd.errors.ParserError, UnicodeDecodeError, OSError, EOFError) as exc:
            raise ClientError(f"Channel {name!r}: could not read {uri} as CSV ({path.name}): "
                              f"{str(exc).splitlines()[0]}") from exc
        frames.append(frame.to_numpy())
    widths = sorted({f.shape[1] for f in frames})
    if len(widths) > 1:
        raise ClientError(f"Channel {name!r}: the files under {uri} have different numbers of columns {widths}")
    data = np.concatenate(frames) if len(frames) > 1 else frames[0]
    first_feature = 2 if weighted else 1
    if data.shape[1] <= first_feature:
        raise ClientError(f"Channel {name!r}: CSV needs the target in the first column and at least one feature")
    if np.isnan(data[:, 0]).any():
        raise ClientError(f"Channel {name!r}: the target (first) column has missing values")
    return xgb.DMatrix(data[:, first_feature:], label=data[:, 0], weight=data[:, 1] if weighted else None)


def _read_libsvm(name: str, uri: str, paths: list[Path], compression: str | None, joined: Path,
                 defaulted: bool) -> Any:
    """Join the channel's files into one and let xgboost's own libsvm parser read it."""
    import gzip
    import shutil

    import xgboost as xgb

    hint = ""
    if defaulted:
        hint = " (no ContentType was given, and the algorithm's default is libsvm: set text/csv for CSV)"
    try:
        with joined.open("wb") as out:
            for path in paths:
                with (gzip.open(path, "rb") if compression else path.open("rb")) as handle:
                    shutil.copyfileobj(handle, out)
                out.write(b"\n")
        return xgb.DMatrix(f"{joined}?format=libsvm")
    except (OSError, EOFError, xgb.core.XGBoostError) as exc:
        raise ClientError(f"Channel {name!r}: could not read {uri} as libsvm{hint}: "
                          f"{str(exc).splitlines()[0]}") from exc


def _raise(exc: BaseException) -> None:
    raise exc


def main(argv: list[str] | None = None) -> int:
    job = supervisor.worker_start(argv, __doc__)
    run = TrainingRun(Layout(job.root), job.region, job.name)
    signal.signal(signal.SIGTERM, lambda *_: _raise(Interrupted("Stopped")))
    warnings.showwarning = lambda message, *_rest, **_kw: run.log(f"[WARNING] {message}")
    try:
        run.run()
    except Interrupted as stop:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second stop must not cut the final write short
        run.log("Training stopped" if stop.secondary == "Stopped" else "MaxRuntimeInSeconds exceeded: stopping")
        run.finish("Stopped", stop.secondary)
        return 0
    except (ClientError, HyperparameterError) as exc:
        reason = str(exc) if str(exc).startswith("ClientError") else f"ClientError: {exc}"
        run.log(reason)
        run.finish("Failed", "Failed", reason)
        return 1
    except Exception as exc:  # the algorithm itself failed: report it, keep the traceback in the log
        traceback.print_exc()
        reason = f"AlgorithmError: {type(exc).__name__}: {exc}"
        run.log(reason)
        run.finish("Failed", "Failed", reason)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
