"""Sentinel: the operator CLI for a Ray recommender platform, locally or on Kubernetes (KubeRay)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("sentinel")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"
