"""The serving API's bearer token on Kubernetes: one Secret per RayService (``<name>-serve-token``,
key ``token``), made by ``serve`` and read by the CLI's own calls, never printed.

``serve --auth token`` renders the RayService with the Secret mounted read-only into the serve pods
(``manifests.SERVE_TOKEN_DIR``) and ``ServeArgs.token_file`` naming the file, so the rendered objects
and ``status`` show a path and a Secret's name, never the token. After the RayService is applied,
``ensure`` creates the Secret once, owner-referenced to the RayService (the garbage collector deletes
it with the RayService): a fresh random token, or ``--token-file``'s. A Secret that exists is kept,
so serving another checkpoint keeps the token. ``token_for`` reads it back through the client
funnel for ``predict``, ``recommend`` and ``verify``.
"""

from __future__ import annotations

import base64
import secrets
from typing import Any

from sentinel_ml.errors import ConfigError


def secret_object(name: str, namespace: str, rayservice: dict[str, Any], token: str) -> dict[str, Any]:
    """The Secret holding ``token``, labelled like Sentinel's objects and owned by ``rayservice``."""
    from sentinel_cli.k8s import manifests

    meta = rayservice["metadata"]
    owner = {"apiVersion": rayservice.get("apiVersion", "ray.io/v1"), "kind": "RayService", "name": meta["name"],
             "uid": meta["uid"], "controller": True, "blockOwnerDeletion": False}
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": name, "namespace": namespace, "ownerReferences": [owner],
                         "labels": {manifests.MANAGED_BY: manifests.MANAGER, "app.kubernetes.io/name": "sentinel",
                                    manifests.COMPONENT: "serve", manifests.RAYSERVICE_LABEL: meta["name"]}},
            "data": {manifests.SERVE_TOKEN_KEY: base64.b64encode(token.encode()).decode()}}


def ensure(kube, name: str, rayservice: dict[str, Any], token_file: str | None) -> str:
    """Make RayService ``rayservice``'s token Secret ``name`` unless it exists; says what it did."""
    from sentinel_cli.k8s.client import SECRET
    from sentinel_ml.serving import auth

    wanted = auth.read_token(token_file) if token_file else None
    existing = kube.get(SECRET, name)
    if existing is not None:
        if wanted is not None and _token(existing) != wanted:
            raise ConfigError(f"Secret {name} already holds another serving token; --token-file does not "
                              "replace it", hint=f"kubectl delete secret {name} -n {kube.namespace}, then serve "
                                                 "again (the replicas read the token when they start)")
        return f"serving token: Secret {name} (kept)"
    token = wanted or secrets.token_urlsafe(auth.TOKEN_BYTES)
    made = kube.create(secret_object(name, kube.namespace, rayservice, token))
    return f"serving token: Secret {name} ({'created' if made is not None else 'kept'})"


def token_for(kube, rayservice: str) -> str:
    """RayService ``rayservice``'s serving token, read from its Secret. Errors name the Secret only."""
    from sentinel_cli.k8s import manifests
    from sentinel_cli.k8s.client import SECRET, NotFound

    name = manifests.serve_token_secret(rayservice)
    secret = kube.get(SECRET, name)
    token = _token(secret) if secret else None
    if not token:
        raise NotFound(f"RayService {rayservice} has no serving token (Secret {name}, key "
                       f"{manifests.SERVE_TOKEN_KEY}, in namespace {kube.namespace})",
                       hint="serve it with --auth token, or pass --token-file")
    return token


def _token(secret: dict[str, Any]) -> str | None:
    from sentinel_cli.k8s import manifests

    encoded = (secret.get("data") or {}).get(manifests.SERVE_TOKEN_KEY)
    return base64.b64decode(encoded).decode().strip() if encoded else None
