"""The Open Inference Protocol (OIP, "KServe v2") for the one model served, over REST and gRPC.

The model takes two tensors of shape [N], ``user_id`` and ``movie_id`` (pair i is ``user_id[i]`` with
``movie_id[i]``), and gives one FP32 tensor of shape [N], ``predictions``. The ids are the dataset's
own: INT64 (or INT32) tensors for a dataset with integer ids, BYTES tensors (UTF-8 strings) for one
with string ids, which the metadata names; either datatype is taken for either kind of dataset (an
integer dataset reads a BYTES ``"42"`` as 42, a string dataset an INT64 42 as ``"42"``).

REST (under ``/v2``): JSON tensors (``"data": [42, 42]``) or Triton's binary tensor extension
(``Inference-Header-Content-Length``: a JSON header, then each tensor's little-endian bytes, sized
by its ``binary_data_size`` parameter), which tritonclient uses by default; answers in binary when
the request asks for it (``binary_data_output``, or ``binary_data`` on the requested output).
BYTES elements in binary (REST's extension, gRPC's ``raw_input_contents``) are Triton's: each a 4-byte
little-endian length, then its bytes.
gRPC (``inference.GRPCInferenceService``): ``contents.int64_contents`` / ``int_contents`` /
``bytes_contents`` after the datatype, or ``raw_input_contents``; answers in ``raw_output_contents``,
as Triton does (what tritonclient reads).

Errors: ``ApiError`` with 400 (malformed request, wrong names, datatypes or shapes, more than
``MAX_PAIRS`` pairs), 404 (unknown model or version here; unknown users or items when the replica
looks the ids up, ``catalogue.UnknownId``), 413 (a request larger than ``MAX_BODY_BYTES``):
``{"error": message}`` over REST, the matching gRPC status code over gRPC.

Pure pydantic and numpy; the generated gRPC modules are imported inside the functions that use them
(as Ray Serve's gRPC guide has it), so the REST side never needs them.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from functools import lru_cache
from typing import Annotated, Any

import numpy as np
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictStr,
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
INPUT_DATATYPE = "INT64"  # the ids' datatype in metadata for a dataset with integer ids
STRING_DATATYPE = "BYTES"  # and for one with string ids
INPUT_DATATYPES = ("INT64", "INT32", "BYTES")  # what requests may send, for either kind of dataset
ITEM_BYTES = {"INT64": 8, "INT32": 4}
RAW_FORMAT = {"INT64": "<i8", "INT32": "<i4"}
CONTENTS = {"INT64": "int64_contents", "INT32": "int_contents", "BYTES": "bytes_contents"}
OUTPUT_DATATYPE = "FP32"
PLATFORM = "pytorch"
EXTENSIONS = ["binary_tensor_data"]  # the REST binary extension (Triton's name for it)
BINARY_HEADER = "Inference-Header-Content-Length"


# -- REST request and response bodies ---------------------------------------------------------------


class InputTensor(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="user_id or movie_id")
    shape: list[int] = Field(description="[N]")
    datatype: str = Field(description="INT64 or INT32 (integer ids), BYTES (string ids)")
    parameters: dict[str, Any] | None = Field(None, description="binary_data_size: the tensor's "
                                              "bytes after the JSON header (binary extension)")
    data: list[Any] | None = Field(None, description="N integers, or N strings for BYTES (absent when "
                                   "sent in binary)")


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
    404: {"model": ProtocolErrorBody, "description": "Unknown model, version, user or movie (named)."},
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


def input_datatype(model: ModelRef) -> str:
    """The ids' datatype the metadata names: the dataset's kind of id."""
    return STRING_DATATYPE if model.id_type == "string" else INPUT_DATATYPE


def model_metadata(model: ModelRef) -> dict[str, Any]:
    return {"name": model.name, "versions": [str(model.version)], "platform": PLATFORM,
            "inputs": [{"name": n, "datatype": input_datatype(model), "shape": [-1]} for n in INPUTS],
            "outputs": [{"name": OUTPUT, "datatype": OUTPUT_DATATYPE, "shape": [-1]}]}


# -- parsing: both transports end in check_tensors → check_pairs; the replica looks the ids up ------


_IDS = TypeAdapter(list[Annotated[int, BeforeValidator(_json_integer)]])
_STRINGS = TypeAdapter(list[StrictStr])
_INT32 = (-(2**31), 2**31 - 1)


@dataclass
class Parsed:
    """A valid infer request: the pairs (the dataset's ids, not yet looked up), the request's id, and
    whether it wants a binary answer."""

    users: list[int | str]
    movies: list[int | str]
    id: str | None = None
    binary_output: bool = False


def check_tensors(tensors: list[tuple[str, str, list[int]]]) -> None:
    """Exactly the inputs ``user_id`` and ``movie_id``, INT64, INT32 or BYTES, shape [N]: 400 otherwise."""
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
        if datatype not in INPUT_DATATYPES:
            raise ApiError(400, f"input tensor {name!r} has datatype {datatype or 'none'!r}; this model "
                                "takes INT64 or INT32 (integer ids) or BYTES (string ids)")
        if len(shape) != 1 or shape[0] < 0:
            raise ApiError(400, f"input tensor {name!r} has shape {list(shape)}; this model takes [N]")
        if shape[0] > MAX_PAIRS:
            raise ApiError(400, f"input tensor {name!r} has {shape[0]} elements: at most {MAX_PAIRS} per request")


def _check_outputs(names: list[str]) -> None:
    for name in names:
        if name != OUTPUT:
            raise ApiError(400, f"unknown output tensor {name!r}: this model gives {OUTPUT!r}")


def _ordered(values: dict[str, list]) -> tuple[list, list]:
    users, movies = values["user_id"], values["movie_id"]
    check_pairs(users, movies)
    return users, movies


def _from_bytes(name: str, datatype: str, raw: bytes, count: int) -> list[int | str]:
    """A tensor's elements from its little-endian bytes (BYTES: Triton's length-prefixed elements)."""
    if datatype == "BYTES":
        return _byte_elements(name, raw, count)
    size = ITEM_BYTES[datatype] * count
    if len(raw) != size:
        raise ApiError(400, f"input tensor {name!r} has {len(raw)} bytes of data; shape [{count}] "
                            f"of {datatype} takes {size}")
    return np.frombuffer(raw, dtype=RAW_FORMAT[datatype]).tolist()


def _byte_elements(name: str, raw: bytes, count: int) -> list[str]:
    elements, offset = [], 0
    while offset < len(raw) and len(elements) <= count:
        if offset + 4 > len(raw):
            raise ApiError(400, f"input tensor {name!r}: BYTES data ends inside an element's 4-byte length")
        (length,) = struct.unpack_from("<I", raw, offset)
        if offset + 4 + length > len(raw):
            raise ApiError(400, f"input tensor {name!r}: a BYTES element of {length} bytes runs past the data")
        elements.append(_text(name, raw[offset + 4:offset + 4 + length]))
        offset += 4 + length
    if len(elements) != count:
        raise ApiError(400, f"input tensor {name!r} has shape [{count}] but its BYTES data holds "
                            f"{'more' if len(elements) > count else len(elements)} elements")
    return elements


def _text(name: str, element: bytes) -> str:
    try:
        return element.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(400, f"input tensor {name!r}: a BYTES element is not UTF-8 text") from None


def _json_values(tensor: InputTensor) -> list[int | str]:
    """A JSON tensor's data: integers for INT64/INT32, strings for BYTES."""
    adapter, kind = (_STRINGS, "strings") if tensor.datatype == "BYTES" else (_IDS, "integers")
    try:
        data = adapter.validate_python(tensor.data)
    except ValidationError as e:
        raise ApiError(400, f"input tensor {tensor.name!r}: data must be a flat list of {kind} "
                            f"({validation_message(list(e.errors(include_url=False)))})") from None
    if tensor.datatype == "INT32" and data and not _INT32[0] <= min(data) <= max(data) <= _INT32[1]:
        raise ApiError(400, f"input tensor {tensor.name!r}: data outside INT32's range")
    return data


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
            values[tensor.name] = _from_bytes(tensor.name, tensor.datatype, binary[offset:offset + size],
                                              tensor.shape[0])
            offset += size
            continue
        if tensor.data is None:
            raise ApiError(400, f"input tensor {tensor.name!r} has no data")
        data = _json_values(tensor)
        if len(data) != tensor.shape[0]:
            raise ApiError(400, f"input tensor {tensor.name!r} has shape {tensor.shape} but "
                                f"{len(data)} elements")
        values[tensor.name] = data
    if offset != len(binary):
        raise ApiError(400, f"{len(binary) - offset} bytes after the JSON header belong to no input tensor")
    users, movies = _ordered(values)
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
    """A ``ModelInferRequest``: the typed contents of each input's datatype (``CONTENTS``), or
    ``raw_input_contents`` per input."""
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
        contents, field = tensor.contents, CONTENTS[tensor.datatype]
        others = [f.name for f, _ in contents.ListFields() if f.name != field]
        if others:
            raise ApiError(400, f"input tensor {tensor.name!r} carries {others[0]}; {tensor.datatype} data goes "
                                f"in {field} or raw_input_contents")
        typed = getattr(contents, field)
        if raw:
            if typed:
                raise ApiError(400, "give tensor data in contents or in raw_input_contents, not both")
            values[tensor.name] = _from_bytes(tensor.name, tensor.datatype, raw[i], tensor.shape[0])
            continue
        data = [_text(tensor.name, b) for b in typed] if tensor.datatype == "BYTES" else list(typed)
        if len(data) != tensor.shape[0]:
            raise ApiError(400, f"input tensor {tensor.name!r} has shape {list(tensor.shape)} but "
                                f"{len(data)} elements")
        values[tensor.name] = data
    users, movies = _ordered(values)
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
