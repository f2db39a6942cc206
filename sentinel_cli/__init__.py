"""Sentinel: the operator CLI for a Ray recommender platform, locally or on Kubernetes (KubeRay)."""

# The one definition of the version: pyproject.toml reads it from here (no metadata lookup at start-up).
__version__ = "0.1.0"
