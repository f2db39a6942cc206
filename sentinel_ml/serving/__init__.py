"""Serving: names and defaults (``config``), the API contract (``api``), inference (``recommender``)
and the Ray Serve application (``app``)."""
