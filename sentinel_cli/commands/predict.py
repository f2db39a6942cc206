"""``sentinel predict`` and ``sentinel recommend``: ask the running serving API and print the answer.
``predict`` speaks any of the served protocols (``--protocol``): POST /recommend, TF-Serving's
``:predict``, the Open Inference Protocol's ``/v2/…/infer`` or its gRPC ``ModelInfer``; ``recommend``
is GET /recommend/{user}/top."""

from __future__ import annotations

import re
from typing import Annotated

import typer

from sentinel_cli import options
from sentinel_cli.output import OutputFormat, emit, records_table
from sentinel_ml.errors import ConfigError
from sentinel_ml.serving.names import (
    DEFAULT_GRPC_ADDRESS,
    DEFAULT_URL,
    NAMES,
    PROTOCOLS,
)

UserOpt = Annotated[str, typer.Option("--user", "-u", help="The user's id in the served data (a MovieLens id, "
                                      "e.g. 42, or your table's own id, e.g. u-17).")]
Protocol = options.choice("Protocol", PROTOCOLS)
_CANONICAL_INTEGER = re.compile(r"-?(0|[1-9][0-9]*)")  # as sentinel_ml.data.tables reads an integer id


def predict(
    user: UserOpt,
    movies: Annotated[str, typer.Option("--movies", "-m", help="Comma-separated item ids of the served data, "
                                        "e.g. 1,2,3 or m-1,m-2 (at most 1000).")],
    protocol: Annotated[Protocol, typer.Option(  # type: ignore[valid-type]
        "--protocol", "-p", help="recommend: POST /recommend; tfserving: TF-Serving REST :predict; "
        "v2: Open Inference Protocol REST; grpc: Open Inference Protocol gRPC (--grpc).")] = Protocol[PROTOCOLS[0]],
    url: options.UrlOpt = DEFAULT_URL,
    grpc_address: Annotated[str, typer.Option("--grpc", help="host:port of the gRPC service (--protocol grpc).",
                                              envvar="SENTINEL_GRPC")] = DEFAULT_GRPC_ADDRESS,
    model: Annotated[str, typer.Option(help="Model name for tfserving, v2 and grpc.")] = NAMES.model,
    token_file: options.TokenFileOpt = None,
    output: options.OutputOpt = OutputFormat.table,
) -> None:
    """Predicted ratings (on the data's scale) of the given items for a user, over any served protocol."""
    user, movie_ids = as_id(user), parse_ids(movies)
    result = {"user_id": user, **ask(Protocol(protocol).value, user, movie_ids, url, grpc_address, model,
                                     _token(token_file))}
    emit(result, output, lambda r: _predictions_table(r, movie_ids))


def ask(protocol: str, user: int | str, movie_ids: list[int | str], url: str, grpc_address: str, model: str,
        token=None) -> dict:
    """``{"predictions": [...], "protocol": ...}`` (plus the model's name and version where the
    protocol reports them) for one user's movies. ``token``: what ``_token`` gives (the token, or
    ``api_client.AUTO`` to find it)."""
    from sentinel_cli import api_client

    token = api_client.AUTO if token is None else token
    users = [user] * len(movie_ids)
    if protocol == "grpc":
        answer = api_client.grpc_infer(grpc_address, model, users, movie_ids, token=token)
    elif protocol == "tfserving":
        body = {"inputs": {"user_id": users, "movie_id": movie_ids}}
        answer = {"predictions": api_client.call(
            "POST", f"{api_client.http_base(url)}/v1/models/{model}:predict", body, token=token)["outputs"]}
    elif protocol == "v2":
        body = {"inputs": [{"name": "user_id", "datatype": oip_datatype(users), "shape": [len(users)], "data": users},
                           {"name": "movie_id", "datatype": oip_datatype(movie_ids), "shape": [len(users)],
                            "data": movie_ids}]}
        response = api_client.call("POST", f"{api_client.http_base(url)}/v2/models/{model}/infer", body, token=token)
        answer = {"model_name": response["model_name"], "model_version": response.get("model_version"),
                  "predictions": response["outputs"][0]["data"]}
    else:
        answer = {"predictions": api_client.call("POST", api_client.endpoint(url),
                                                 {"user_id": user, "movie_ids": movie_ids}, token=token)["predictions"]}
    return {**answer, "protocol": protocol}


def recommend(
    user: UserOpt,
    k: Annotated[int, typer.Option("-k", "--top", min=1, max=100, help="How many movies.")] = 10,
    min_ratings: Annotated[int | None, typer.Option(
        min=0, max=1000, show_default=False,
        help="Only movies with at least this many ratings; 0 for every movie. Default: the API's (20).")] = None,
    url: options.UrlOpt = DEFAULT_URL,
    token_file: options.TokenFileOpt = None,
    output: options.OutputOpt = OutputFormat.table,
) -> None:
    """The k highest-scored movies a user has not rated yet."""
    import urllib.parse

    from sentinel_cli import api_client

    query = f"k={k}" + (f"&min_ratings={min_ratings}" if min_ratings is not None else "")
    result = api_client.call("GET", api_client.endpoint(url, f"/{urllib.parse.quote(user, safe='')}/top?{query}"), token=_token(token_file))
    emit(result, output, _top_table)


def _token(token_file: str | None):
    """The token in ``--token-file``, or ``api_client.AUTO``: the local application's own, sent only to it."""
    from sentinel_cli import api_client
    from sentinel_ml.serving.auth import read_token

    return read_token(token_file) if token_file else api_client.AUTO


def as_id(text: str) -> int | str:
    """An id as the served data has it: an integer where the text is one as a table writes it
    (``42``, ``-7``: MovieLens' and other integer ids), else the text (a string id); the server maps
    either to its own type. ``007`` or ``+7`` stay text: the string id ``007`` is not the id ``7``
    (``sentinel_ml.data.tables`` reads ids by the same rule), and a server with integer ids still
    reads them as 7."""
    text = text.strip()
    if not text:
        raise ConfigError("an empty id", hint="for example --user 42, or --user u-17 for string ids")
    if _CANONICAL_INTEGER.fullmatch(text) and -(1 << 63) <= (value := int(text)) < 1 << 63:
        return value
    return text  # a huge integer too: the tables read an id int64 cannot hold as its text


def parse_ids(text: str) -> list[int | str]:
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts:
        raise ConfigError(f"--movies {text!r} is not a list of item ids", hint="for example --movies 1,2,3")
    return [as_id(p) for p in parts]


def oip_datatype(ids: list[int | str]) -> str:
    """INT64 for integer ids, BYTES for string ids (OIP's tensor types)."""
    return "INT64" if all(isinstance(i, int) for i in ids) else "BYTES"


def _predictions_table(result: dict, movie_ids: list[int]):
    rows = [{"movie_id": m, "rating": r} for m, r in zip(movie_ids, result["predictions"])]
    via = f" via {result['protocol']}" if result.get("protocol", "recommend") != "recommend" else ""
    return records_table(rows, [("movie id", "movie_id"), ("predicted rating", "rating")],
                         title=f"user {result['user_id']}{via}")


def _top_table(result: dict):
    rows = [{"rank": i, **m} for i, m in enumerate(result["movies"], 1)]
    return records_table(rows, [("#", "rank"), ("movie id", "movie_id"), ("title", "title"), ("score", "score")],
                         title=f"top {result['k']} for user {result['user_id']}",
                         empty="no unrated movies left for this user")
