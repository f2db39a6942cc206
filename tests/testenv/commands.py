"""The command line of every component: pure functions of binaries, paths and ports.

Everything binds to 127.0.0.1. The flags follow envtest and kwokctl's binary runtime, except
that we keep the ServiceAccount admission plugin (we run a controller manager) and disable
leader election everywhere (one replica of each, outside any cluster).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tests.support.ports import free_ports
from tests.testenv.build import Assets
from tests.testenv.pki import Pki

SERVICE_CIDR = "10.0.0.0/24"
POD_CIDR = "10.244.0.1/16"
KWOK_NODE_ANNOTATION = "kwok.x-k8s.io/node"
ISSUER = "https://kubernetes.default.svc.cluster.local"


@dataclass(frozen=True)
class Ports:
    etcd_client: int
    etcd_peer: int
    apiserver: int
    controller_manager: int
    scheduler: int
    kwok: int
    operator_metrics: int
    operator_health: int
    dashboard: int  # the stand-in Ray dashboard, in the test process

    @classmethod
    def pick(cls) -> Ports:
        return cls(*free_ports(9))


@dataclass(frozen=True)
class Paths:
    """Files and folders of one running environment, all inside its work directory."""

    root: Path

    @property
    def pki(self) -> Path:
        return self.root / "pki"

    @property
    def etcd_data(self) -> Path:
        return self.root / "etcd"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def kubeconfig(self) -> Path:
        return self.root / "kubeconfig"

    @property
    def kwok_config(self) -> Path:
        return self.root / "kwok.yaml"

    @property
    def container_log(self) -> Path:
        return self.root / "container.log"

    @property
    def state(self) -> Path:
        return self.root / "state.json"

    def cert_dir(self, component: str) -> Path:
        return self.root / "certs" / component


def etcd(assets: Assets, paths: Paths, ports: Ports) -> list[str]:
    client = f"http://127.0.0.1:{ports.etcd_client}"
    peer = f"http://127.0.0.1:{ports.etcd_peer}"
    return [
        str(assets.etcd),
        "--name=default",
        f"--data-dir={paths.etcd_data}",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=default={peer}",
        "--listen-metrics-urls=",
        "--unsafe-no-fsync",  # a throwaway store: durability buys nothing, fsync costs seconds
        "--log-level=warn",
    ]


def kube_apiserver(assets: Assets, paths: Paths, ports: Ports, pki: Pki) -> list[str]:
    return [
        str(assets.kube_apiserver),
        f"--etcd-servers=http://127.0.0.1:{ports.etcd_client}",
        "--bind-address=127.0.0.1",
        f"--secure-port={ports.apiserver}",
        # Loopback cannot be an Endpoints address, so the `kubernetes` Service gets none.
        "--advertise-address=127.0.0.1",
        "--endpoint-reconciler-type=none",
        f"--cert-dir={paths.cert_dir('kube-apiserver')}",
        f"--tls-cert-file={pki.serving_cert}",
        f"--tls-private-key-file={pki.serving_key}",
        f"--client-ca-file={pki.ca_cert}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        f"--service-account-issuer={ISSUER}",
        f"--service-account-key-file={pki.service_account_pub}",
        f"--service-account-signing-key-file={pki.service_account_key}",
        "--authorization-mode=RBAC",
        "--allow-privileged=true",
        # kwok's nodes answer `kubectl logs` on 127.0.0.1, their InternalIP.
        "--kubelet-preferred-address-types=InternalIP",
    ]


def kube_controller_manager(assets: Assets, paths: Paths, ports: Ports, pki: Pki) -> list[str]:
    return [
        str(assets.kube_controller_manager),
        *_client_flags(paths),
        "--bind-address=127.0.0.1",
        f"--secure-port={ports.controller_manager}",
        f"--cert-dir={paths.cert_dir('kube-controller-manager')}",
        f"--root-ca-file={pki.ca_cert}",
        f"--service-account-private-key-file={pki.service_account_key}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--leader-elect=false",
    ]


def kube_scheduler(assets: Assets, paths: Paths, ports: Ports) -> list[str]:
    return [
        str(assets.kube_scheduler),
        *_client_flags(paths),
        "--bind-address=127.0.0.1",
        f"--secure-port={ports.scheduler}",
        f"--cert-dir={paths.cert_dir('kube-scheduler')}",
        "--leader-elect=false",
    ]


def kwok(assets: Assets, paths: Paths, ports: Ports, pki: Pki) -> list[str]:
    return [
        str(assets.kwok),
        f"--kubeconfig={paths.kubeconfig}",
        f"--config={paths.kwok_config}",
        f"--manage-nodes-with-annotation-selector={KWOK_NODE_ANNOTATION}=fake",
        # Without a lease kwok v0.7.0 stops heartbeating and nodes turn NotReady; kwokctl uses 40.
        "--node-lease-duration-seconds=40",
        "--node-ip=127.0.0.1",
        f"--node-port={ports.kwok}",
        f"--server-address=127.0.0.1:{ports.kwok}",
        f"--tls-cert-file={pki.serving_cert}",
        f"--tls-private-key-file={pki.serving_key}",
        f"--cidr={POD_CIDR}",
    ]


def ray_operator(assets: Assets, paths: Paths, ports: Ports) -> list[str]:
    return [
        str(assets.ray_operator),
        f"--kubeconfig={paths.kubeconfig}",
        "--enable-leader-election=false",
        f"--metrics-addr=127.0.0.1:{ports.operator_metrics}",
        f"--health-probe-bind-address=127.0.0.1:{ports.operator_health}",
        "--log-stdout-encoder=console",
    ]


def _client_flags(paths: Paths) -> list[str]:
    kubeconfig = str(paths.kubeconfig)
    return [
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
    ]
