"""The ``/recommend`` API's contract: request/response models, limits and input checks, and what
every protocol shares (``ApiError``, the limits, ``ModelRef``, ``check_pairs``). TF-Serving's REST
contract is in ``tfserving``, the Open Inference Protocol's (REST and gRPC) in ``oip``.

Pure pydantic, no torch and no Ray, so the contract is testable on its own and shared by the Serve
deployment (``sentinel_ml.serve``) and the benchmark's plain baselines.

Ids are the dataset's own (``sentinel_ml.serving.catalogue``): JSON integers or strings. An integer
dataset also takes an id's decimal string (``"42"`` is 42); a string dataset takes an integer as its
string (``42`` is ``"42"``). The responses carry the dataset's ids as the dataset has them.

Policy for bad input (every case is a 4xx with a JSON body ``{"detail": "<message>"}``):

- malformed requests → 422: bad JSON, wrong types (``true``, ``42.5``, ``null``, a list or an object
  are not ids; ``42.0`` is the JSON integer 42; a string id is 1 to ``MAX_ID_LENGTH`` characters),
  missing or extra fields, an empty ``movie_ids`` or more than ``MAX_MOVIE_IDS`` of them (a body that
  is not even UTF-8 → 400, FastAPI's answer);
- well-formed ids the model does not know → 404 naming them and whether they are users or items
  (``catalogue.UnknownId``). No cold-start fallback for unknown users: an id the model has never seen
  is almost always a caller's bug, and a silent global-mean answer would hide it;
- a body over ``MAX_BODY_BYTES`` → 413, on every protocol, before it is parsed.

TF-Serving and OIP answer the same cases with their own body (``{"error": message}``) and 400 where
``/recommend`` says 422; gRPC maps 400 → INVALID_ARGUMENT, 404 → NOT_FOUND, 413 → RESOURCE_EXHAUSTED.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints

MAX_MOVIE_IDS = 1000
MAX_PAIRS = MAX_MOVIE_IDS  # (user, movie) pairs in one TF-Serving or OIP request
MAX_BODY_BYTES = 1 << 20  # 1 MiB: 1,000 pairs in the most verbose format take about 45 kB
MAX_ID_LENGTH = 256  # characters of a string id
MAX_TOP_K = 100
DEFAULT_TOP_K = 10
# Top-k skips movies with fewer ratings than this: a movie rated once or twice by enthusiasts gets a
# confident, high score from either model, and a list of obscure titles is not a useful answer.
DEFAULT_MIN_RATINGS = 20


def _json_integer(value: object) -> object:
    """JSON integers only: ``42`` and ``42.0`` (the same JSON Schema integer), not ``"42"`` or ``true``."""
    if isinstance(value, str | bool):
        raise ValueError("must be a JSON integer, not a string or a boolean")  # noqa: TRY004 - pydantic wants ValueError
    return value


def _json_id(value: object) -> object:
    """A JSON integer (``42``, or ``42.0``, the same JSON Schema integer) or a JSON string; not a
    boolean or a fraction."""
    if isinstance(value, bool):
        raise ValueError("must be a JSON integer or string, not a boolean")  # noqa: TRY004 - pydantic wants ValueError
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError("must be a JSON integer or string, not a fraction")
        return int(value)
    return value


StringId = Annotated[str, StringConstraints(min_length=1, max_length=MAX_ID_LENGTH)]
Id = Annotated[int | StringId, BeforeValidator(_json_id),
               Field(description="The dataset's id: a JSON integer or string (an integer dataset also "
                                 "takes the id's decimal string).")]
DatasetId = Annotated[int | str, Field(description="The dataset's id, as the dataset has it.")]


class ApiError(Exception):
    """A client error: ``status_code`` and a one-line ``message``. ``/recommend`` answers it as
    ``{"detail": message}``, TF-Serving and OIP REST as ``{"error": message}``, gRPC with the status
    code of ``GRPC_CODES``."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message


# HTTP status → the gRPC status code name (grpc.StatusCode.<name>) of the same client error.
GRPC_CODES = {400: "INVALID_ARGUMENT", 404: "NOT_FOUND", 413: "RESOURCE_EXHAUSTED", 422: "INVALID_ARGUMENT"}


@dataclass(frozen=True)
class ModelRef:
    """What a TF-Serving or OIP request names and what the served model knows."""

    name: str
    version: int
    num_users: int
    num_items: int
    id_type: str = "int"  # the dataset's ids: "int" or "string" (the tensors' datatypes in metadata)

    def check(self, name: str, version: str | None = None) -> None:
        """404 unless ``name`` (and ``version``, when given) is the model served; 400 for a version
        that is no positive integer."""
        if name != self.name:
            raise ApiError(404, f"model {name!r} not found: this server serves {self.name!r}")
        if version in (None, ""):
            return
        if not version.isdigit() or int(version) < 1:
            raise ApiError(400, f"model version {version!r} is not a positive integer")
        if int(version) != self.version:
            raise ApiError(404, f"version {int(version)} of model {name!r} not found: "
                                f"this server serves version {self.version}")


def check_pairs(users: list, movies: list) -> None:
    """(user, movie) pairs of a TF-Serving or OIP request: as many users as movies, 1 to MAX_PAIRS (400).
    Whether the model knows the ids is the catalogue's lookup (404)."""
    if len(users) != len(movies):
        raise ApiError(400, f"user_id has {len(users)} elements but movie_id has {len(movies)}: "
                            "give one user per movie")
    if not users:
        raise ApiError(400, "no (user_id, movie_id) pairs: give at least one")
    if len(users) > MAX_PAIRS:
        raise ApiError(400, f"{len(users)} pairs: at most {MAX_PAIRS} per request")


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [{"user_id": 42, "movie_ids": [1, 2, 3]}]})

    user_id: Id
    movie_ids: list[Id] = Field(min_length=1, max_length=MAX_MOVIE_IDS,
                                description=f"1 to {MAX_MOVIE_IDS} of the dataset's item ids.")


class PredictResponse(BaseModel):
    user_id: DatasetId
    predictions: list[float] = Field(description="Predicted ratings (within the dataset's rating scale), "
                                                 "one per movie id, in request order.")
    model_version: int = Field(description="The model version that answered (during a canary, the "
                                           "candidate's or the incumbent's).")


class ScoredMovie(BaseModel):
    movie_id: DatasetId
    title: str | None
    score: float


class TopResponse(BaseModel):
    user_id: DatasetId
    k: int
    min_ratings: int = Field(description="Only movies with at least this many ratings in the dataset were "
                                         "considered.")
    movies: list[ScoredMovie] = Field(description="Highest-scored movies the user has not rated.")
    model_version: int = Field(description="The model version that answered.")


class Health(BaseModel):
    status: str


class BatchingInfo(BaseModel):
    """This replica's batching settings and what it has done since it started."""

    max_batch_size: int
    batch_wait_timeout_s: float = Field(description="The longest a batch waits to fill (the setting).")
    current_wait_s: float = Field(0.0, description="The longest batches wait now: the setting while "
                                  "callers overlap, 0 while batches hold one request each.")
    batches: int = 0
    requests: int = 0
    largest_batch: int = 0


class ModelInfo(BaseModel):
    model_name: str = Field(description="The name TF-Serving and OIP requests use.")
    model_version: int = Field(description="Positive, stable for one checkpoint (see docs/serving.md).")
    checkpoint_uri: str
    run_id: str | None
    metrics: dict[str, float]
    num_users: int
    num_items: int
    embedding_dim: int
    dataset: str = Field(description="The dataset the model was trained on (its serving data's).")
    id_type: str = Field(description="The dataset's ids: int or string.")
    max_movie_ids: int = MAX_MOVIE_IDS
    batching: BatchingInfo
    canary: dict[str, Any] | None = Field(None, description="The candidate served beside this model "
                                          "(checkpoint_uri, run_id, model_version, percent), or null.")


class ErrorBody(BaseModel):
    detail: str


class ProtocolErrorBody(BaseModel):
    """The error body of TF-Serving's REST API and of the Open Inference Protocol's."""

    error: str


ERROR_RESPONSES = {
    404: {"model": ErrorBody, "description": "Unknown user or item ids (the message names them)."},
    422: {"model": ErrorBody, "description": "Invalid request."},
}
BODY_ERROR_RESPONSES = {
    400: {"model": ErrorBody, "description": "The body cannot be decoded (not UTF-8)."},
    413: {"model": ErrorBody, "description": f"Body larger than {MAX_BODY_BYTES} bytes."},
    **ERROR_RESPONSES,
}


def validation_message(errors: list[dict]) -> str:
    """One line from pydantic/FastAPI validation errors: ``body.movie_ids.0: Input should be …``."""
    parts = []
    for error in errors[:5]:
        location = ".".join(str(p) for p in error.get("loc", ()))
        parts.append(f"{location}: {error.get('msg', 'invalid')}" if location else error.get("msg", "invalid"))
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return "; ".join(parts) + more or "invalid request"
