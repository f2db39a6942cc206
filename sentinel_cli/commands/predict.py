"""``sentinel predict`` and ``sentinel recommend``: ask the running serving API (POST /recommend,
GET /recommend/{user}/top) and print the answer."""

from __future__ import annotations

from typing import Annotated

import typer

from sentinel_cli import options
from sentinel_cli.output import OutputFormat, emit, records_table
from sentinel_ml.errors import ConfigError
from sentinel_ml.serving.config import DEFAULT_URL

UserOpt = Annotated[int, typer.Option("--user", "-u", min=1, help="MovieLens user id (1-943).")]


def predict(
    user: UserOpt,
    movies: Annotated[str, typer.Option("--movies", "-m", help="Comma-separated MovieLens movie ids, "
                                        "e.g. 1,2,3 (at most 1000).")],
    url: options.UrlOpt = DEFAULT_URL,
    output: options.OutputOpt = OutputFormat.table,
) -> None:
    """Predicted ratings (1-5) of the given movies for a user."""
    from sentinel_cli import api_client

    movie_ids = parse_ids(movies)
    result = api_client.call("POST", api_client.endpoint(url), {"user_id": user, "movie_ids": movie_ids})
    emit(result, output, lambda r: _predictions_table(r, movie_ids))


def recommend(
    user: UserOpt,
    k: Annotated[int, typer.Option("-k", "--top", min=1, max=100, help="How many movies.")] = 10,
    min_ratings: Annotated[int | None, typer.Option(
        min=0, max=1000, show_default=False,
        help="Only movies with at least this many ratings; 0 for every movie. Default: the API's (20).")] = None,
    url: options.UrlOpt = DEFAULT_URL,
    output: options.OutputOpt = OutputFormat.table,
) -> None:
    """The k highest-scored movies a user has not rated yet."""
    from sentinel_cli import api_client

    query = f"k={k}" + (f"&min_ratings={min_ratings}" if min_ratings is not None else "")
    result = api_client.call("GET", api_client.endpoint(url, f"/{user}/top?{query}"))
    emit(result, output, _top_table)


def parse_ids(text: str) -> list[int]:
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts or not all(p.isdigit() for p in parts):
        raise ConfigError(f"--movies {text!r} is not a list of movie ids", hint="for example --movies 1,2,3")
    return [int(p) for p in parts]


def _predictions_table(result: dict, movie_ids: list[int]):
    rows = [{"movie_id": m, "rating": r} for m, r in zip(movie_ids, result["predictions"])]
    return records_table(rows, [("movie id", "movie_id"), ("predicted rating", "rating")],
                         title=f"user {result['user_id']}")


def _top_table(result: dict):
    rows = [{"rank": i, **m} for i, m in enumerate(result["movies"], 1)]
    return records_table(rows, [("#", "rank"), ("movie id", "movie_id"), ("title", "title"), ("score", "score")],
                         title=f"top {result['k']} for user {result['user_id']}",
                         empty="no unrated movies left for this user")
