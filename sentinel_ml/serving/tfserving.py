"""TensorFlow Serving's REST API, in its shapes, for the one model served (pure pydantic: no Ray).

``POST /v1/models/<name>[/versions/<v>]:predict`` takes rows (``{"instances": [{"user_id": 42,
"movie_id": 1}, …]}`` → ``{"predictions": [4.21, …]}``) or columns (``{"inputs": {"user_id": [42, 42],
"movie_id": [1, 2]}}`` → ``{"outputs": [4.21, 3.9]}``); ``GET /v1/models/<name>[/versions/<v>]`` is the
model's status and ``…/metadata`` its signature. Ids are the dataset's own, JSON integers or strings
(``"user_id": "u42"``; the signature's inputs are DT_INT64 or DT_STRING after the dataset's ids).
Errors are TF Serving's body, ``{"error": "…"}``: 400 for a bad request, 404 for an unknown model,
version, user or movie.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from sentinel_ml.serving.api import MAX_PAIRS, Id, ModelRef, ProtocolErrorBody
from sentinel_ml.serving.config import SIGNATURE_NAME

INPUTS = ("user_id", "movie_id")
OUTPUT = "predictions"


class Instance(BaseModel):
    """One row: a user and a movie."""

    model_config = ConfigDict(extra="forbid")

    user_id: Id
    movie_id: Id


class Columns(BaseModel):
    """Columns of the same length: ``user_id[i]`` with ``movie_id[i]``."""

    model_config = ConfigDict(extra="forbid")

    user_id: list[Id] = Field(min_length=1, max_length=MAX_PAIRS)
    movie_id: list[Id] = Field(min_length=1, max_length=MAX_PAIRS)

    @model_validator(mode="after")
    def _same_length(self) -> Columns:
        if len(self.user_id) != len(self.movie_id):
            raise ValueError(f"ragged columns: user_id has {len(self.user_id)} elements, movie_id "
                             f"{len(self.movie_id)}")
        return self


class TFPredictRequest(BaseModel):
    """TF Serving's predict request: ``instances`` (row format) or ``inputs`` (columnar), not both."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "oneOf": [{"required": ["instances"]}, {"required": ["inputs"]}],
        "examples": [
            {"instances": [{"user_id": 42, "movie_id": 1}, {"user_id": 42, "movie_id": 2}]},
            {"signature_name": SIGNATURE_NAME, "inputs": {"user_id": [42, 42], "movie_id": [1, 2]}}]})

    signature_name: str = Field(SIGNATURE_NAME, json_schema_extra={"enum": [SIGNATURE_NAME]},
                                description=f"Only {SIGNATURE_NAME!r}.")
    # Not nullable: absent, not null, when the other format is used (None is only the default).
    instances: list[Instance] = Field(None, min_length=1, max_length=MAX_PAIRS)  # type: ignore[assignment]
    inputs: Columns = Field(None)  # type: ignore[assignment]

    @model_validator(mode="after")
    def _one_format(self) -> TFPredictRequest:
        if self.signature_name != SIGNATURE_NAME:
            raise ValueError(f'Serving signature name: "{self.signature_name}" not found in signature def '
                             f"(this model has {SIGNATURE_NAME!r})")
        if (self.instances is None) == (self.inputs is None):
            raise ValueError("give exactly one of 'instances' (row format) and 'inputs' (columnar format)")
        return self

    def pairs(self) -> tuple[list[int | str], list[int | str]]:
        if self.instances is not None:
            return [i.user_id for i in self.instances], [i.movie_id for i in self.instances]
        return self.inputs.user_id, self.inputs.movie_id

    def answer(self, predictions: list[float]) -> dict[str, list[float]]:
        return {"predictions": predictions} if self.instances is not None else {"outputs": predictions}


class TFPredictResponse(BaseModel):
    """``predictions`` for a row-format request, ``outputs`` for a columnar one."""

    predictions: list[float] | None = None
    outputs: list[float] | None = None
    model_version: str | None = Field(None, description="Sentinel's addition: the version that answered "
                                      "(during a canary, the candidate's or the incumbent's).")


class VersionStatus(BaseModel):
    version: str
    state: str
    status: dict[str, str]


class ModelStatus(BaseModel):
    model_version_status: list[VersionStatus]


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ProtocolErrorBody, "description": "Bad request: malformed JSON, wrong types or shapes."},
    404: {"model": ProtocolErrorBody, "description": "Unknown model, version, user or movie."},
    413: {"model": ProtocolErrorBody, "description": "Body larger than the limit."},
}


def model_status(model: ModelRef) -> dict[str, Any]:
    return {"model_version_status": [{"version": str(model.version), "state": "AVAILABLE",
                                      "status": {"error_code": "OK", "error_message": ""}}]}


def _tensor(dtype: str) -> dict[str, Any]:
    return {"dtype": dtype, "tensor_shape": {"dim": [{"size": "-1", "name": ""}], "unknown_rank": False}}


def model_metadata(model: ModelRef) -> dict[str, Any]:
    """TF Serving's ``GET …/metadata``: the model spec and its one signature (string ids: DT_STRING)."""
    ids = "DT_STRING" if model.id_type == "string" else "DT_INT64"
    signature = {
        "inputs": {name: {**_tensor(ids), "name": f"{name}:0"} for name in INPUTS},
        "outputs": {OUTPUT: {**_tensor("DT_FLOAT"), "name": f"{OUTPUT}:0"}},
        "method_name": "tensorflow/serving/predict",
    }
    return {"model_spec": {"name": model.name, "signature_name": "", "version": str(model.version)},
            "metadata": {"signature_def": {"signature_def": {SIGNATURE_NAME: signature}}}}

