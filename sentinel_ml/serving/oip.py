"""The Open Inference Protocol (OIP, "KServe v2") for the one model served, over REST and gRPC.

The model takes two INT64 tensors of shape [N], ``user_id`` and ``movie_id`` (pair i is
``user_id[i]`` with ``movie_id[i]``), and gives one FP32 tensor of shape [N], ``predictions``.

REST (under ``/v2``): JSON tensors (``"data": [42, 42]``) or Triton's binary tensor extension
(``Inference-Header-Content-Length``: a JSON header, then each tensor's little-endian bytes, sized
by its ``binary_data_size`` parameter), which tritonclient uses by default; answers in binary when
the request asks for it (``binary_data_output``, or ``binary_data`` on the requested output).
gRPC (``inference.GRPCInferenceService``): ``contents.int64_contents`` or ``raw_input_contents``;
answers in ``raw_output_contents``, as Triton does (what tritonclient reads).

Errors: ``ApiError`` with 400 (malformed request, wrong names, datatypes or shapes, more than
``MAX_PAIRS`` pairs, ids below 1), 404 (unknown model, version, user or movie), 413 (a request larger
than ``MAX_BODY_BYTES``): ``{"error": message}`` over REST, the matching gRPC status code over gRPC.

Pure pydantic and numpy; the generated gRPC modules are imported inside the functions that use them
(as Ray Serve's gRPC guide has it), so the REST side never needs them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Annotated, Any

import numpy as np
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
)

from sentinel_ml.serving.api import (
    GRPC_CODES,
    MAX_BODY_BYTES,
    MAX_PAIRS,
    ApiError,
    ModelRef,
    ProtocolErrorBody,
    _json_integer,
    check_pairs,
    validation_message,
)

SERVER_NAME = "sentinel"
INPUTS = ("user_id", "movie_id")
OUTPUT = "predictions"
INPUT_DATATYPE = "INT64"
OUTPUT_DATATYPE = "FP32"
PLATFORM = "pytorch"
EXTENSIONS = ["binary_tensor_data"]  # the REST binary extension (Triton's name for it)
BINARY_HEADER = "Inference-Header-Content-Length"


# -- REST request and response bodies ---------------------------------------------------------------


class InputTensor(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="user_id or movie_id")
    shape: list[int] = Field(description="[N]")
    datatype: str = Field(description=INPUT_DATATYPE)
    parameters: dict[str, Any] | None = Field(None, description="binary_data_size: the tensor's "
                                              "bytes after the JSON header (binary extension)")
    data: list[Any] | None = Field(None, description="N integers (absent when sent in binary)")


class RequestedOutput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    parameters: dict[str, Any] | None = None


class InferRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "inputs": [{"name": "user_id", "shape": [2], "datatype": "INT64", "data": [42, 42]},
                   {"name": "movie_id", "shape": [2], "datatype": "INT64", "data": [1, 2]}]}]})

    id: str | None = None
    parameters: dict[str, Any] | None = None
    inputs: list[InputTensor] = Field(min_length=1)
    outputs: list[RequestedOutput] | None = None


class OutputTensor(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Any] | None = None
    data: list[float] | None = None


class InferResponse(BaseModel):
    model_name: str
    model_version: str | None = None
    id: str | None = None
    parameters: dict[str, Any] | None = None
    outputs: list[OutputTensor]


class ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]


class TensorMetadata(BaseModel):
    name: str
    datatype: str
    shape: list[int]


class ModelMetadata(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]


class Live(BaseModel):
    live: bool


class Ready(BaseModel):
    ready: bool


class ModelReady(BaseModel):
    name: str
    ready: bool


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ProtocolErrorBody, "description": "Bad request: malformed JSON, wrong tensors, datatypes or shapes."},
    404: {"model": ProtocolErrorBody, "description": "Unknown model, version, user or movie."},
    413: {"model": ProtocolErrorBody, "description": "Body larger than the limit."},
}


def server_metadata() -> dict[str, Any]:
    return {"name": SERVER_NAME, "version": server_version(), "extensions": EXTENSIONS}


@lru_cache(maxsize=1)
def server_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("sentinel")
    except PackageNotFoundError:
        return "0"


def model_metadata(model: ModelRef) -> dict[str, Any]:
    return {"name": model.name, "versions": [str(model.version)], "platform": PLATFORM,
            "inputs": [{"name": n, "datatype": INPUT_DATATYPE, "shape": [-1]} for n in INPUTS],
            "outputs": [{"name": OUTPUT, "datatype": OUTPUT_DATATYPE, "shape": [-1]}]}


# -- parsing: both transports end in check_tensors → check_pairs ------------------------------------


_IDS = TypeAdapter(list[Annotated[int, BeforeValidator(_json_integer)]])


@dataclass
class Parsed:
    """A valid infer request: the pairs, the request's id, and whether it wants a binary answer."""

    users: list[int]
    movies: list[int]
    id: str | None = None
    binary_output: bool = False


def check_tensors(tensors: list[tuple[str, str, list[int]]]) -> None:
    """Exactly the inputs ``user_id`` and ``movie_id``, INT64, shape [N]: 400 otherwise."""
    names = [name for name, _, _ in tensors]
    for name in names:
        if name not in INPUTS:
            raise ApiError(400, f"unexpected input tensor {name!r}: this model takes user_id and movie_id")
        if names.count(name) > 1:
            raise ApiError(400, f"input tensor {name!r} is given twice")
    for name in INPUTS:
        if name not in names:
            raise ApiError(400, f"missing input tensor {name!r}: this model takes user_id and movie_id")
    for name, datatype, shape in tensors:
        if datatype != INPUT_DATATYPE:
            raise ApiError(400, f"input tensor {name!r} has datatype {datatype or 'none'!r}; this model "
                                f"takes {INPUT_DATATYPE}")
        if len(shape) != 1 or shape[0] < 0:
            raise ApiError(400, f"input tensor {name!r} has shape {list(shape)}; this model takes [N]")
        if shape[0] > MAX_PAIRS:
            raise ApiError(400, f"input tensor {name!r} has {shape[0]} elements: at most {MAX_PAIRS} per request")


def _check_outputs(names: list[str]) -> None:
    for name in names:
        if name != OUTPUT:
            raise ApiError(400, f"unknown output tensor {name!r}: this model gives {OUTPUT!r}")


def _ordered(values: dict[str, list[int]], model: ModelRef) -> tuple[list[int], list[int]]:
    users, movies = values["user_id"], values["movie_id"]
    check_pairs(users, movies, model.num_users, model.num_items)
    return users, movies


def _from_bytes(name: str, raw: bytes, count: int) -> list[int]:
    if len(raw) != 8 * count:
        raise ApiError(400, f"input tensor {name!r} has {len(raw)} bytes of data; shape [{count}] "
                            f"of {INPUT_DATATYPE} takes {8 * count}")
    return np.frombuffer(raw, dtype="<i8").tolist()


def parse_rest(body: bytes, header_length: str | None, model: ModelRef, name: str,
               version: str | None = None) -> Parsed:
    """A REST infer request (JSON, or the binary extension's JSON header + tensor bytes)."""
    model.check(name, version)
    if len(body) > MAX_BODY_BYTES:
        raise ApiError(413, f"request body of {len(body)} bytes: at most {MAX_BODY_BYTES}")
    binary = b""
    if header_length is not None:
        if not header_length.isdigit() or int(header_length) > len(body):
            raise ApiError(400, f"{BINARY_HEADER} {header_length!r} is not a length within the body")
        body, binary = body[:int(header_length)], body[int(header_length):]
    try:
        request = InferRequest.model_validate_json(body)
    except ValidationError as e:
        raise ApiError(400, validation_message(list(e.errors(include_url=False)))) from None
    check_tensors([(t.name, t.datatype, t.shape) for t in request.inputs])
    _check_outputs([o.name for o in request.outputs or []])
    values, offset = {}, 0
    for tensor in request.inputs:
        size = (tensor.parameters or {}).get("binary_data_size")
        if size is not None:
            if tensor.data is not None:
                raise ApiError(400, f"input tensor {tensor.name!r} has both data and binary_data_size")
            if type(size) is not int or size < 0 or offset + size > len(binary):
                raise ApiError(400, f"input tensor {tensor.name!r}: binary_data_size {size!r} does not fit "
                                    f"the {len(binary)} bytes after the JSON header")
            values[tensor.name] = _from_bytes(tensor.name, binary[offset:offset + size], tensor.shape[0])
            offset += size
            continue
        if tensor.data is None:
            raise ApiError(400, f"input tensor {tensor.name!r} has no data")
        try:
            data = _IDS.validate_python(tensor.data)
        except ValidationError as e:
            raise ApiError(400, f"input tensor {tensor.name!r}: data must be a flat list of integers "
                                f"({validation_message(list(e.errors(include_url=False)))})") from None
        if len(data) != tensor.shape[0]:
            raise ApiError(400, f"input tensor {tensor.name!r} has shape {tensor.shape} but "
                                f"{len(data)} elements")
        values[tensor.name] = data
    if offset != len(binary):
        raise ApiError(400, f"{len(binary) - offset} bytes after the JSON header belong to no input tensor")
    users, movies = _ordered(values, model)
    return Parsed(users, movies, request.id, _wants_binary(request))


def _wants_binary(request: InferRequest) -> bool:
    default = bool((request.parameters or {}).get("binary_data_output", False))
    for output in request.outputs or []:
        if "binary_data" in (output.parameters or {}):
            return bool(output.parameters["binary_data"])
    return default


def rest_response(model: ModelRef, parsed: Parsed, predictions: np.ndarray) -> tuple[bytes, dict[str, str]]:
    """The infer response body and its headers: JSON, or the binary extension's header + FP32 bytes."""
    output: dict[str, Any] = {"name": OUTPUT, "datatype": OUTPUT_DATATYPE, "shape": [len(predictions)]}
    answer: dict[str, Any] = {"model_name": model.name, "model_version": str(model.version)}
    if parsed.id is not None:
        answer["id"] = parsed.id
    if not parsed.binary_output:
        answer["outputs"] = [{**output, "data": predictions.tolist()}]
        return json.dumps(answer).encode(), {"content-type": "application/json"}
    raw = predictions.astype("<f4").tobytes()
    answer["outputs"] = [{**output, "parameters": {"binary_data_size": len(raw)}}]
    header = json.dumps(answer).encode()
    return header + raw, {"content-type": "application/octet-stream", BINARY_HEADER: str(len(header))}


# -- gRPC ------------------------------------------------------------------------------------------------


def parse_grpc(request, model: ModelRef) -> Parsed:
    """A ``ModelInferRequest``: ``contents.int64_contents`` or ``raw_input_contents`` per input."""
    if request.ByteSize() > MAX_BODY_BYTES:
        raise ApiError(413, f"request of {request.ByteSize()} bytes: at most {MAX_BODY_BYTES}")
    model.check(request.model_name, request.model_version)
    check_tensors([(t.name, t.datatype, list(t.shape)) for t in request.inputs])
    _check_outputs([o.name for o in request.outputs])
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise ApiError(400, f"{len(raw)} raw_input_contents for {len(request.inputs)} inputs: give one per input")
    values = {}
    for i, tensor in enumerate(request.inputs):
        contents = tensor.contents
        others = [f.name for f, _ in contents.ListFields() if f.name != "int64_contents"]
        if others:
            raise ApiError(400, f"input tensor {tensor.name!r} carries {others[0]}; {INPUT_DATATYPE} data goes "
                                "in int64_contents or raw_input_contents")
        if raw:
            if contents.int64_contents:
                raise ApiError(400, "give tensor data in contents or in raw_input_contents, not both")
            values[tensor.name] = _from_bytes(tensor.name, raw[i], tensor.shape[0])
            continue
        data = list(contents.int64_contents)
        if len(data) != tensor.shape[0]:
            raise ApiError(400, f"input tensor {tensor.name!r} has shape {list(tensor.shape)} but "
                                f"{len(data)} elements")
        values[tensor.name] = data
    users, movies = _ordered(values, model)
    return Parsed(users, movies, request.id or None, True)


def grpc_response(model: ModelRef, parsed: Parsed, predictions: np.ndarray):
    from sentinel_ml.serving import grpc_predict_v2_pb2 as pb

    response = pb.ModelInferResponse(model_name=model.name, model_version=str(model.version),
                                     id=parsed.id or "")
    response.outputs.add(name=OUTPUT, datatype=OUTPUT_DATATYPE, shape=[len(predictions)])
    response.raw_output_contents.append(predictions.astype("<f4").tobytes())
    return response


def grpc_model_metadata(model: ModelRef):
    from sentinel_ml.serving import grpc_predict_v2_pb2 as pb

    meta = model_metadata(model)
    Tensor = pb.ModelMetadataResponse.TensorMetadata
    return pb.ModelMetadataResponse(
        name=meta["name"], versions=meta["versions"], platform=meta["platform"],
        inputs=[Tensor(**t) for t in meta["inputs"]], outputs=[Tensor(**t) for t in meta["outputs"]])


def set_grpc_error(context, error: ApiError) -> None:
    """The client error on a gRPC context (``grpc.ServicerContext`` or Serve's ``RayServegRPCContext``)."""
    import grpc

    context.set_code(getattr(grpc.StatusCode, GRPC_CODES.get(error.status_code, "INVALID_ARGUMENT")))
    context.set_details(error.message)
