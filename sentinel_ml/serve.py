"""The serving application's import path for Ray Serve and KubeRay: ``sentinel_ml.serve:app_builder``
(``config.IMPORT_PATH``; the RayService's ``serveConfigV2`` names it). The application itself is
``sentinel_ml.serving.app``."""

from sentinel_ml.serving.app import app_builder

__all__ = ["app_builder"]
