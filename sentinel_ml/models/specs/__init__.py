"""One module per model, each holding its ``SPEC`` (``sentinel_ml.models.spec.ModelSpec``); the registry
(``sentinel_ml.models.registry.REGISTERED``) lists them. Cheap to import: torch loads in the builders."""
