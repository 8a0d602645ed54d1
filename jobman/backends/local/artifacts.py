"""The built-in XGBoost algorithm's model artifact: `model.tar.gz` holding one file, `xgboost-model`."""

from __future__ import annotations

import io
import tarfile
import time
from typing import Any

MODEL_FILE = "xgboost-model"


def pack_model(booster: Any) -> bytes:
    """model.tar.gz bytes for an xgboost Booster, as a SageMaker training job uploads it."""
    model = bytes(booster.save_raw("ubj"))
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz") as tar:
        member = tarfile.TarInfo(MODEL_FILE)
        member.size, member.mtime, member.mode = len(model), int(time.time()), 0o644
        tar.addfile(member, io.BytesIO(model))
    return archive.getvalue()
