"""Scoring with the built-in XGBoost algorithm's model, shared by the endpoint worker and the transform worker.

One module so that an endpoint and a batch transform of the same model give the same predictions, byte for
byte: the same artifact loading, the same CSV parsing (pandas' C parser, float32), the same iteration range
and the same number formatting. Imports nothing heavy at module level: the workers import it at start.
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path
from typing import Any

from jobman.backends.local.artifacts import MODEL_FILE
from jobman.backends.local.objects import ObjectError, ObjectStore, parse_s3_uri


class BadRequest(Exception):
    """The payload cannot be scored; answered with `status` and the message (the caller sees a ModelError)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class Model:
    """The loaded booster and how to score CSV with it."""

    def __init__(self, booster: Any) -> None:
        self.booster = booster
        self.num_features = booster.num_features()
        best = booster.attr("best_iteration")
        # Like the container, score with the trees up to the best round when early stopping found one.
        self.iteration_range = (0, int(best) + 1) if best is not None else (0, 0)

    def predict_csv(self, body: bytes) -> bytes:
        """CSV rows in, one prediction a line out: what `POST /invocations` answers."""
        return format_predictions(self.predict(self.parse_csv(body)))

    def parse_csv(self, body: bytes) -> Any:
        """Rows of features as a float32 array, checked against the model's feature count."""
        import numpy as np
        import pandas as pd

        if not body.strip():
            raise BadRequest("The request body is empty: expected CSV rows of features.")
        try:
            frame = pd.read_csv(io.BytesIO(body), header=None, dtype=np.float32, engine="c")
        except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
            raise BadRequest(f"Unable to parse the payload as CSV of numbers: {str(exc).splitlines()[0]}") from exc
        features = frame.to_numpy()
        if features.shape[1] != self.num_features:
            raise BadRequest(
                f"Feature size mismatch: the model expects {self.num_features} columns per row, "
                f"the payload has {features.shape[1]} (send features only, no target, no header)."
            )
        return features

    def predict(self, features: Any) -> Any:
        return self.booster.inplace_predict(features, iteration_range=self.iteration_range)


def format_predictions(predictions: Any) -> bytes:
    """One line per row; 9 significant digits give a float32 back exactly, at twice the speed of repr."""
    rows = predictions.tolist()
    if predictions.ndim == 1:
        return "\n".join([f"{value:.9g}" for value in rows]).encode()
    return "\n".join(",".join([f"{value:.9g}" for value in row]) for row in rows).encode()


def load_model(objects: ObjectStore, model_data_url: str) -> Model:
    """Read `xgboost-model` out of the model.tar.gz in the emulated S3 (never extracting to disk)."""
    import xgboost as xgb

    failure = (
        f'Failed to download model data for container "container_1" from URL: "{model_data_url}". Please ensure '
        "that there is an object located at the URL and that the role passed to CreateModel has permissions "
        "to download the model."
    )
    try:
        bucket, key = parse_s3_uri(model_data_url)
        path = objects.object_path(bucket, key)
        objects.head(bucket, key)
    except ObjectError as exc:
        raise RuntimeError(failure) from exc
    try:
        with tarfile.open(path, "r:*") as archive:
            members = [m for m in archive.getmembers() if m.isfile()]
            chosen = next((m for m in members if Path(m.name).name == MODEL_FILE), members[0] if members else None)
            if chosen is None:
                raise RuntimeError(f"The model artifact {model_data_url} holds no file.")
            handle = archive.extractfile(chosen)
            raw = handle.read() if handle else b""
        booster = xgb.Booster()
        booster.load_model(bytearray(raw))
    except (tarfile.TarError, OSError, EOFError, xgb.core.XGBoostError) as exc:
        raise RuntimeError(f"Could not load the model from {model_data_url}: {str(exc).splitlines()[0]}") from exc
    return Model(booster)


def load_container_model(objects: ObjectStore, image: str, model_data_url: str | None) -> Model:
    """The model a container definition (Image, ModelDataUrl) names, refused unless the local backend can serve it."""
    from jobman.images import is_builtin_xgboost

    if not is_builtin_xgboost(image):
        raise RuntimeError(
            f"the local backend serves only the built-in XGBoost algorithm images; got {image or 'no Image'!r}"
        )
    if not model_data_url:
        raise RuntimeError("The model has no ModelDataUrl: the built-in XGBoost container needs a model artifact.")
    return load_model(objects, model_data_url)
