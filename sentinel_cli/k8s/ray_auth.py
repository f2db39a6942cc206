"""Ray's token authentication on the clusters Sentinel makes on Kubernetes (KubeRay ``authOptions``).

Whoever reaches a Ray head's dashboard port can submit a job, that is run code in the cluster
(CVE-2023-48022, "ShadowRay"). Every RayCluster, RayJob and RayService that Sentinel renders carries
``authOptions: {mode: token}``. KubeRay (1.5.1+) then does the rest, as read in v1.5.2's source
(``raycluster_controller.go reconcileAuthSecret``, ``common/pod.go SetContainerTokenAuthEnvVars``):

- it generates a random token (32 bytes from crypto/rand) per RayCluster into a Secret named like
  the RayCluster (``secret_name``), key ``auth_token``, labelled ``ray.io/cluster`` and
  owner-referenced to the RayCluster, so the garbage collector deletes it with the cluster
  (``delete``, ``serve stop``, a finished RayJob's clean-up); a Secret that already exists is kept,
  so a re-apply never changes the token;
- it sets ``RAY_AUTH_MODE=token`` and ``RAY_AUTH_TOKEN`` (a ``secretKeyRef``, never the value) on
  the Ray containers, the autoscaler and a RayJob's submitter, and sends the token
  (``x-ray-authorization: Bearer …``) on its own dashboard calls (job status, Serve config).

So the rendered objects carry no token at all, only the mode. The name of that Secret is KubeRay's
to choose in 1.5 (a RayJob's or RayService's RayCluster gets a generated name), which is why
Sentinel does not create it: KubeRay 1.6's ``authOptions.secretName`` would let it.

The operator must know ``authOptions``: an older one would drop it and run the cluster open, so
``check_operator`` refuses before anything is applied, unless ``--insecure-ray`` says otherwise.
"""

from __future__ import annotations

import re
from typing import Any, Literal, get_args

from sentinel_ml.errors import ConfigError

RayAuth = Literal["token", "disabled"]
RAY_AUTH_MODES: tuple[str, ...] = get_args(RayAuth)
SECRET_KEY = "auth_token"  # KubeRay's key in the per-cluster Secret (utils.RAY_AUTH_TOKEN_SECRET_KEY)
HEADER = "x-ray-authorization"  # what KubeRay sends; Ray's dashboard also takes Authorization
MIN_KUBERAY = (1, 5, 1)  # the first KubeRay with authOptions
MIN_RAY = (2, 52, 0)  # the first Ray with token authentication (KubeRay validates this)
RAYCLUSTER_CRD = "rayclusters.ray.io"
OPERATOR_SELECTOR = "app.kubernetes.io/name=kuberay-operator"
INSECURE_FLAG = "--insecure-ray"
# What a cluster without a token leaves open, said whenever one is rendered or applied.
LEFT_OPEN = ("Ray token authentication is off: any pod (or anyone else) that reaches the Ray head's "
             "dashboard (8265), client (10001) or GCS (6379) port can submit jobs, that is run code with "
             "the pods' service account and S3 credentials (CVE-2023-48022, \"ShadowRay\")")
_NAME_MAX = 50  # KubeRay's utils.CheckName


def auth_options(mode: RayAuth) -> dict[str, str] | None:
    """The RayCluster spec's ``authOptions`` for ``mode`` (None: leave it out, for old operators)."""
    return {"mode": "token"} if mode == "token" else None


def check_ray_version(mode: RayAuth, ray_version: str) -> None:
    """KubeRay refuses token mode below Ray 2.52; say it before applying, with the fix."""
    if mode == "token" and _version(ray_version) < MIN_RAY:
        raise ConfigError(f"Ray {ray_version} has no token authentication (it needs Ray "
                          f"{'.'.join(map(str, MIN_RAY))} or newer)",
                          hint=f"build images with a newer Ray (kubernetes.ray_version), or accept an open "
                               f"cluster with {INSECURE_FLAG}")


def secret_name(cluster: str) -> str:
    """The Secret KubeRay keeps the token of RayCluster ``cluster`` in (its ``utils.CheckName``)."""
    name = cluster[-_NAME_MAX:] if len(cluster) > _NAME_MAX else cluster
    if name[0].isdigit() or not name[0].isalnum():
        name = "r" + name[1:]
    return name


def crd_supports_token(crd: dict[str, Any]) -> bool:
    """Whether a RayCluster CRD's served schema has ``spec.authOptions.mode`` with ``token``."""
    for version in crd.get("spec", {}).get("versions") or []:
        if not version.get("served"):
            continue
        spec = (((version.get("schema") or {}).get("openAPIV3Schema") or {}).get("properties") or {}).get("spec")
        mode = (((spec or {}).get("properties") or {}).get("authOptions") or {}).get("properties", {}).get("mode")
        if mode and "token" in (mode.get("enum") or ["token"]):
            return True
    return False


def operator_versions(deployments: list[dict[str, Any]]) -> list[str]:
    """The KubeRay operator versions the cluster's operator Deployments run (their image tags)."""
    tags = {c["image"].rsplit(":", 1)[-1] for d in deployments
            for c in d["spec"]["template"]["spec"]["containers"] if ":" in c["image"]}
    return sorted(tags)


def supports_token(version: str) -> bool | None:
    """Whether KubeRay ``version`` (a tag such as v1.5.2) has token auth; None when it is not a version."""
    parsed = _version(version)
    return None if parsed == (0,) else parsed >= MIN_KUBERAY


def operator_support(crd: dict[str, Any] | None, deployments: list[dict[str, Any]]) -> tuple[bool, str]:
    """Whether the cluster's KubeRay can run token auth, and one line that says why (for ``doctor``
    and the refusal): the RayCluster CRD must have ``authOptions`` and every operator Deployment
    found must run 1.5.1 or newer (a test environment's operator may run outside the cluster:
    then the CRD decides)."""
    versions = operator_versions(deployments)
    named = f"operator {', '.join(versions)}" if versions else "no operator Deployment found (CRDs only)"
    if crd is None:
        return False, f"{named}; the RayCluster CRD is missing"
    old = [v for v in versions if supports_token(v) is False]
    if old:
        return False, f"{named}: token authentication needs KubeRay {_dotted(MIN_KUBERAY)} or newer"
    if not crd_supports_token(crd):
        return False, (f"{named}; the RayCluster CRD has no spec.authOptions (KubeRay older than "
                       f"{_dotted(MIN_KUBERAY)})")
    return True, f"{named}; token authentication supported (RayCluster CRD has spec.authOptions)"


def check_operator(kube) -> None:
    """Refuse (exit 2) to apply a token-authenticated cluster to an operator that would run it open."""
    from sentinel_cli.k8s.client import CRD, DEPLOYMENT, Forbidden

    try:
        crd = kube.get(CRD, RAYCLUSTER_CRD)
        if crd is None:
            return  # no KubeRay at all: applying says so, with `sentinel up`
        deployments = kube.list(DEPLOYMENT, OPERATOR_SELECTOR, all_namespaces=True)
    except Forbidden:
        # An account that may not read cluster-scoped CRDs or list every namespace (a schedule's runner,
        # a namespace-scoped user) cannot be told the operator's version here; it is still never run
        # open: applies are fieldValidation=Strict, so a CRD without spec.authOptions refuses the object.
        return
    ok, why = operator_support(crd, deployments)
    if not ok:
        raise ConfigError(f"the cluster's KubeRay cannot run Ray with token authentication: {why}",
                          hint=f"upgrade KubeRay to {_dotted(MIN_KUBERAY)} or newer (sentinel up --target k8s "
                               f"installs {_installed()}), or run this cluster open with {INSECURE_FLAG}")


def cluster_token(kube, cluster: str) -> str:
    """RayCluster ``cluster``'s token, read from KubeRay's Secret through the client funnel. Errors
    name the Secret, never its content."""
    import base64

    from sentinel_cli.k8s.client import SECRET, NotFound

    name = secret_name(cluster)
    secret = kube.get(SECRET, name)
    encoded = ((secret or {}).get("data") or {}).get(SECRET_KEY)
    if not encoded:
        raise NotFound(f"RayCluster {cluster} has no Ray token yet (Secret {name}, key {SECRET_KEY})",
                       hint="KubeRay creates it when it reconciles the cluster: wait for the cluster, or "
                            "check that it was applied with token authentication (sentinel render)")
    return base64.b64decode(encoded).decode()


def headers(token: str) -> dict[str, str]:
    """The dashboard request headers that carry ``token``."""
    return {HEADER: f"Bearer {token}"}


def uses_token(objects: list[dict[str, Any]]) -> bool:
    """Whether any of the rendered objects asks for token authentication."""
    return any(_cluster_spec(obj).get("authOptions", {}).get("mode") == "token" for obj in objects)


def open_clusters(objects: list[dict[str, Any]]) -> list[str]:
    """The Ray objects among ``objects`` that run without token authentication."""
    return [f"{obj['kind']}/{obj['metadata']['name']}" for obj in objects
            if obj.get("kind") in ("RayCluster", "RayJob", "RayService")
            and _cluster_spec(obj).get("authOptions", {}).get("mode") != "token"]


def _cluster_spec(obj: dict[str, Any]) -> dict[str, Any]:
    spec = obj.get("spec") or {}
    kind = obj.get("kind")
    if kind == "RayJob":
        return spec.get("rayClusterSpec") or {}
    if kind == "RayService":
        return spec.get("rayClusterConfig") or {}
    return spec if kind == "RayCluster" else {}


def _version(text: str) -> tuple[int, ...]:
    match = re.match(r"^v?(\d+)\.(\d+)(?:\.(\d+))?", text.strip())
    return tuple(int(g or 0) for g in match.groups()) if match else (0,)


def _dotted(version: tuple[int, ...]) -> str:
    return ".".join(map(str, version))


def _installed() -> str:
    from sentinel_cli.k8s.platform_objects import KUBERAY_VERSION

    return KUBERAY_VERSION
