"""The Serve application over real HTTP: answers, batching, and every kind of bad input (4xx JSON,
never a 5xx)."""

from __future__ import annotations

import asyncio
import json

import httpx
import numpy as np
import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def client(served_app):
    with httpx.Client(base_url=served_app.url, timeout=30) as c:
        yield c


@pytest.mark.parametrize("path", ["", "/"])
def test_predict_gives_one_clipped_rating_per_movie_in_request_order(client, model, path):
    movie_ids = [50, 1, 1682, 1, 181]
    response = client.post(path, json={"user_id": 42, "movie_ids": movie_ids})

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["user_id"] == 42
    assert body["predictions"] == pytest.approx(model.predict(42, movie_ids), abs=1e-5)
    assert all(1.0 <= p <= 5.0 for p in body["predictions"])
    assert body["predictions"][1] == body["predictions"][3]  # the same movie twice, the same answer


def test_the_documented_cap_of_movie_ids_is_accepted(client):
    response = client.post("", json={"user_id": 1, "movie_ids": list(range(1, 1001))})

    assert response.status_code == 200, response.text
    assert len(response.json()["predictions"]) == 1000


def test_top_k_are_unrated_movies_with_titles_best_first(client, model, served_app):
    from tests.support.movielens_ref import read_ratings

    response = client.get("/42/top", params={"k": 7, "min_ratings": 0})

    assert response.status_code == 200, response.text
    body = response.json()
    movies = body["movies"]
    assert body["user_id"] == 42 and body["k"] == 7 and body["min_ratings"] == 0 and len(movies) == 7
    ratings = read_ratings(served_app.dataset_dir / "u.data")
    rated = set(ratings.items[ratings.users == 42].tolist())
    assert not rated & {m["movie_id"] for m in movies}
    scores = [m["score"] for m in movies]
    assert scores == sorted(scores, reverse=True)
    assert all(m["title"] for m in movies)
    assert scores[0] == pytest.approx(max(
        s for i, s in enumerate(model.predict(42, list(range(1, 1683))), 1) if i not in rated), abs=1e-5)


def test_top_k_defaults_to_ten(client):
    assert len(client.get("/1/top").json()["movies"]) == 10


def test_top_k_skips_rarely_rated_movies_unless_asked(client, model):
    def ratings(movie_id: int) -> int:
        return int(model.catalogue.popularity[model.catalogue.item_index(movie_id)])

    default = client.get("/42/top", params={"k": 20}).json()
    assert default["min_ratings"] == 20
    assert all(ratings(m["movie_id"]) >= 20 for m in default["movies"])
    stricter = client.get("/42/top", params={"k": 20, "min_ratings": 200}).json()["movies"]
    assert stricter and all(ratings(m["movie_id"]) >= 200 for m in stricter)
    everything = client.get("/42/top", params={"k": 20, "min_ratings": 0}).json()["movies"]
    assert everything[0]["score"] >= default["movies"][0]["score"]


def test_health_and_model_report_the_checkpoint_served(client, served_app):
    assert client.get("/healthz").json() == {"status": "ok"}
    info = client.get("/model").json()
    assert info["checkpoint_uri"] == served_app.checkpoint
    assert info["run_id"] == served_app.run_id
    assert info["model_name"] == "recommender" and info["model_version"] > 0
    assert info["metrics"]["val_rmse"] > 0
    assert (info["num_users"], info["num_items"], info["max_movie_ids"]) == (943, 1682, 1000)
    assert (info["dataset"], info["id_type"]) == ("ml-100k", "int")


def test_openapi_spec_and_docs_are_served(client):
    spec = client.get("/openapi.json").json()
    assert {"/recommend", "/recommend/{user_id}/top", "/recommend/healthz", "/recommend/model",
            "/v1/models/{model}:predict", "/v2/models/{model}/infer"} <= set(spec["paths"])
    docs = client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


def test_concurrent_callers_share_forward_passes(client, served_app, model):
    """64 callers at once: each gets its own answers, and the replica ran them in batches."""
    rng = np.random.default_rng(7)
    requests = [{"user_id": int(rng.integers(1, 944)), "movie_ids": rng.integers(1, 1683, 10).tolist()}
                for _ in range(64)]

    async def call_all():
        async with httpx.AsyncClient(base_url=served_app.url, timeout=60) as c:
            return await asyncio.gather(*(c.post("", json=r) for r in requests))

    before = client.get("/model").json()["batching"]
    responses = asyncio.run(call_all())
    after = client.get("/model").json()["batching"]

    for request, response in zip(requests, responses):
        assert response.status_code == 200, response.text
        assert response.json()["predictions"] == pytest.approx(
            model.predict(request["user_id"], request["movie_ids"]), abs=1e-5)
    assert after["requests"] - before["requests"] == 64
    assert after["batches"] - before["batches"] < 64  # some forward passes served several callers
    assert after["largest_batch"] > 1


JSON = {"content-type": "application/json"}
BAD_REQUESTS = [
    # (id, method, path, request kwargs, status)
    ("malformed json", "POST", "", {"content": b'{"user_id": 42, "movie_ids": [1,', "headers": JSON}, 422),
    ("empty body", "POST", "", {"content": b"", "headers": JSON}, 422),
    ("not an object", "POST", "", {"json": [42, [1, 2]]}, 422),
    ("plain text", "POST", "", {"content": b"user 42", "headers": {"content-type": "text/plain"}}, 422),
    ("missing user", "POST", "", {"json": {"movie_ids": [1]}}, 422),
    ("missing movies", "POST", "", {"json": {"user_id": 1}}, 422),
    ("user as empty string", "POST", "", {"json": {"user_id": "", "movie_ids": [1]}}, 422),
    ("user as object", "POST", "", {"json": {"user_id": {"id": 42}, "movie_ids": [1]}}, 422),
    ("user as fraction", "POST", "", {"json": {"user_id": 42.5, "movie_ids": [1]}}, 422),
    ("user as bool", "POST", "", {"json": {"user_id": True, "movie_ids": [1]}}, 422),
    ("user null", "POST", "", {"json": {"user_id": None, "movie_ids": [1]}}, 422),
    ("movies not a list", "POST", "", {"json": {"user_id": 1, "movie_ids": "1,2"}}, 422),
    ("movie as string of no integer", "POST", "", {"json": {"user_id": 1, "movie_ids": [1, "two"]}}, 404),
    ("nested movies", "POST", "", {"json": {"user_id": 1, "movie_ids": [[1]]}}, 422),
    ("negative user", "POST", "", {"json": {"user_id": -1, "movie_ids": [1]}}, 404),  # unknown, not malformed
    ("user zero", "POST", "", {"json": {"user_id": 0, "movie_ids": [1]}}, 404),
    ("negative movie", "POST", "", {"json": {"user_id": 1, "movie_ids": [1, -5]}}, 404),
    ("movie zero", "POST", "", {"json": {"user_id": 1, "movie_ids": [0]}}, 404),
    ("unknown user", "POST", "", {"json": {"user_id": 944, "movie_ids": [1]}}, 404),
    ("huge user", "POST", "", {"json": {"user_id": 10**30, "movie_ids": [1]}}, 404),
    ("unknown movie", "POST", "", {"json": {"user_id": 1, "movie_ids": [1, 1683]}}, 404),
    ("huge movie", "POST", "", {"json": {"user_id": 1, "movie_ids": [2**70]}}, 404),
    ("empty movies", "POST", "", {"json": {"user_id": 1, "movie_ids": []}}, 422),
    ("oversized movies", "POST", "", {"json": {"user_id": 1, "movie_ids": [1] * 1001}}, 422),
    ("extra field", "POST", "", {"json": {"user_id": 1, "movie_ids": [1], "k": 3}}, 422),
    ("10 MB body", "POST", "", {"content": b"[" + b"1," * (5 << 20) + b"1]", "headers": JSON}, 413),
    ("top: unknown user", "GET", "/944/top", {}, 404),
    ("top: negative user", "GET", "/-3/top", {}, 404),
    ("top: user not a number", "GET", "/abc/top", {}, 404),
    ("top: user id too long", "GET", "/" + "1" * 257 + "/top", {}, 422),
    ("top: k zero", "GET", "/1/top", {"params": {"k": 0}}, 422),
    ("top: k too large", "GET", "/1/top", {"params": {"k": 101}}, 422),
    ("top: k not a number", "GET", "/1/top", {"params": {"k": "ten"}}, 422),
    ("top: min_ratings negative", "GET", "/1/top", {"params": {"min_ratings": -1}}, 422),
    ("wrong method", "GET", "", {}, 405),
    ("unknown path", "GET", "/nothing/here", {}, 404),
]


@pytest.mark.parametrize("method, path, kwargs, status", [r[1:] for r in BAD_REQUESTS],
                         ids=[r[0] for r in BAD_REQUESTS])
def test_bad_input_is_a_4xx_with_a_json_message(client, method, path, kwargs, status):
    response = client.request(method, path, **kwargs)

    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    detail = json.loads(response.text)["detail"]
    assert isinstance(detail, str) and detail
    assert client.post("", json={"user_id": 1, "movie_ids": [1, 2]}).status_code == 200  # still answering


def test_unknown_ids_are_named_with_their_kind(client):
    assert client.post("", json={"user_id": 944, "movie_ids": [1]}).json() == {
        "detail": "unknown user 944: not among this model's 943 users"}
    assert client.post("", json={"user_id": 1, "movie_ids": [1, 1683, "x", 1683]}).json() == {
        "detail": "unknown items 1683, 'x': not among this model's 1682 items"}
    assert client.get("/abc/top").json() == {"detail": "unknown user 'abc': not among this model's 943 users"}


def test_an_integer_datasets_ids_may_come_as_decimal_strings(client, model):
    """"42" is user 42 of ml-100k (a client that quotes every id); the answer gives the dataset's 42."""
    quoted = client.post("", json={"user_id": "42", "movie_ids": ["1", 50]})
    assert quoted.status_code == 200, quoted.text
    assert quoted.json() == {"user_id": 42, "predictions": pytest.approx(model.predict(42, [1, 50]), abs=1e-5),
                             "model_version": client.get("/model").json()["model_version"]}
    top = client.get("/42/top", params={"k": 3}).json()
    assert top["user_id"] == 42 and all(type(m["movie_id"]) is int for m in top["movies"])
