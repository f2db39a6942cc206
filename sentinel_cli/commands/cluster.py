"""``sentinel cluster render``: an eksctl ClusterConfig for EKS and the cluster-autoscaler manifest."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sentinel_cli import options
from sentinel_cli.commands.render import ManifestFormat, ManifestOpt

app = typer.Typer(help="An EKS cluster for Sentinel (eksctl).", no_args_is_help=True)


@app.command("render")
def render(
    name: Annotated[str, typer.Option(help="EKS cluster name.")] = "sentinel",
    region: Annotated[str, typer.Option(help="AWS region.", envvar="AWS_REGION")] = "us-east-1",
    kubernetes_version: Annotated[str, typer.Option(help="Kubernetes minor version.")] = "1.34",
    head_instance_type: Annotated[str, typer.Option(help="On-demand nodes (Ray heads, MLflow, MinIO).")] = "m5.xlarge",
    spot_instance_type: Annotated[list[str] | None, typer.Option(
        help="Spot instance types for training workers (repeatable). Default: m5/m5a/m5d/m4 .xlarge.",
        show_default=False)] = None,
    max_spot_nodes: Annotated[int, typer.Option(min=1, help="Upper bound of the spot node group.")] = 10,
    gpu_nodes: Annotated[str, typer.Option(
        help="GPU node group size MIN:MAX (or MAX); 0 adds no GPU group. GPU nodes are labelled "
             "accelerator=nvidia, nvidia.com/gpu.present=true and tainted nvidia.com/gpu=true:NoSchedule.")] = "0",
    gpu_instance_type: Annotated[list[str] | None, typer.Option(
        help="GPU instance types (repeatable). Default: g5.xlarge.", show_default=False)] = None,
    gpu_spot: Annotated[bool, typer.Option("--gpu-spot", help="Add a spot GPU node group beside the "
                                                               "on-demand one (same size bounds).")] = False,
    storage: options.StorageOpt = None,
    profile: options.ProfileOpt = None,
    namespace: options.NamespaceOpt = None,
    out_dir: Annotated[Path | None, typer.Option(
        help="Write cluster.yaml and cluster-autoscaler.yaml here instead of printing both.",
        show_default=False)] = None,
    output: ManifestOpt = ManifestFormat.yaml,
) -> None:
    """Print an eksctl ClusterConfig (on-demand heads, spot workers, GPU groups with --gpu-nodes, IRSA,
    autoscaler tags) and the cluster-autoscaler manifest. Nothing is sent anywhere."""
    from sentinel_cli import console
    from sentinel_cli.aws import eks
    from sentinel_cli.k8s import settings
    from sentinel_cli.k8s.render import to_yaml
    from sentinel_cli.k8s.request import Overrides
    from sentinel_ml.store.uri import split_s3

    config = settings.load(Overrides(profile=profile, namespace=namespace, storage=storage))
    bucket, prefix = split_s3(config.storage) if config.storage else (None, "")
    cluster = eks.EksCluster(
        name=name, region=region, kubernetes_version=kubernetes_version, head_instance_type=head_instance_type,
        spot_instance_types=tuple(spot_instance_type or eks.EksCluster.spot_instance_types),
        spot_nodes=(0, max_spot_nodes), namespace=config.namespace, gpu_nodes=eks.node_range(gpu_nodes),
        gpu_instance_types=tuple(gpu_instance_type or eks.EksCluster.gpu_instance_types), gpu_spot=gpu_spot,
        service_account=config.service_account.name, bucket=bucket, prefix=prefix,
    )
    parts = {"cluster.yaml": [eks.cluster_config(cluster)],
             "cluster-autoscaler.yaml": eks.autoscaler_objects(cluster)}
    if out_dir is None:
        _print([obj for objects in parts.values() for obj in objects], output, to_yaml)
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    for filename, objects in parts.items():
        (out_dir / filename).write_text(to_yaml(objects))
    stderr = console.err()
    stderr.print(f"wrote {out_dir / 'cluster.yaml'} and {out_dir / 'cluster-autoscaler.yaml'}; next:")
    for line in (f"eksctl create cluster -f {out_dir / 'cluster.yaml'}",
                 f"kubectl apply -f {out_dir / 'cluster-autoscaler.yaml'}", "sentinel up --target k8s"):
        print(line, file=console.data())
    if not bucket:
        stderr.print("[yellow]note:[/] no --storage s3://bucket/prefix: the pods get no IRSA role for S3")


def _print(objects, output: ManifestFormat, to_yaml) -> None:
    import json

    from sentinel_cli import console

    if output is ManifestFormat.json:
        print(json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}, indent=2), file=console.data())
    else:
        print(to_yaml(objects), end="", file=console.data())
