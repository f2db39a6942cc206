"""The real node's pure parts and helpers, without a node: configs, the sandbox image archive, the
torch wheel rewrite, the DNS client, and the stand-in dashboard's forwarding to a real dashboard."""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import socket
import struct
import tarfile
import threading
import tomllib
import urllib.request
import zipfile
from pathlib import Path

from tests.support.ports import free_ports
from tests.testenv import images, node
from tests.testenv.dashboard import StandInDashboard


def test_containerd_and_kubelet_configs_carry_what_this_machine_needs(tmp_path: Path) -> None:
    config = tomllib.loads(node.containerd_config(tmp_path / "cni"))
    cri = config["plugins"]["io.containerd.grpc.v1.cri"]
    assert cri["restrict_oom_score_adj"] is True  # no CAP_SYS_RESOURCE here
    assert cri["containerd"]["runtimes"]["runc"]["options"]["SystemdCgroup"] is False
    assert cri["cni"]["conf_dir"] == str(tmp_path / "cni")
    assert cri["sandbox_image"] == node.sandbox_reference()
    assert config["plugins"]["io.containerd.internal.v1.opt"]["path"].startswith("/var/lib/containerd")
    kubelet = node.kubelet_configuration("sentinel-node-1")
    assert (kubelet["cgroupDriver"], kubelet["cgroupRoot"]) == ("cgroupfs", "/sentinel-node-1")
    assert kubelet["clusterDNS"] == [node.NODE_ADDRESS] and kubelet["failCgroupV1"] is False
    assert node.cni_config()["plugins"][0]["ipam"]["ranges"] == [[{"subnet": node.POD_CIDR}]]


def test_the_sandbox_archive_is_a_consistent_oci_layout(tmp_path: Path) -> None:
    program = tmp_path / "pause"
    program.write_bytes(b"\x7fELF not really")
    archive = tmp_path / "pause.tar"
    node.write_pause_archive(program, archive, "localhost/sentinel-pause:x")
    with tarfile.open(archive) as tar:
        def blob(digest: str) -> bytes:
            data = tar.extractfile(f"blobs/sha256/{digest.removeprefix('sha256:')}").read()  # type: ignore[union-attr]
            assert hashlib.sha256(data).hexdigest() == digest.removeprefix("sha256:")
            return data

        index = json.load(tar.extractfile("index.json"))  # type: ignore[arg-type]
        entry = index["manifests"][0]
        assert entry["annotations"]["io.containerd.image.name"] == "localhost/sentinel-pause:x"
        manifest = json.loads(blob(entry["digest"]))
        config = json.loads(blob(manifest["config"]["digest"]))
        layer = blob(manifest["layers"][0]["digest"])
    assert config["config"]["Entrypoint"] == ["/pause"]
    assert config["rootfs"]["diff_ids"] == [manifest["layers"][0]["digest"]]
    assert b"ELF not really" in layer


def test_a_wheel_loses_the_dropped_requirements_and_gains_the_local_label(tmp_path: Path) -> None:
    wheel = tmp_path / "torch-2.0.0-cp311-cp311-manylinux_2_28_x86_64.whl"
    metadata = ("Metadata-Version: 2.1\nName: torch\nVersion: 2.0.0\nRequires-Dist: filelock\n"
                'Requires-Dist: triton~=3.0; platform_system == "Linux"\n'
                'Requires-Dist: nvidia-cublas==1; platform_system == "Linux"\n\nDescription\n')
    with zipfile.ZipFile(wheel, "w") as out:
        out.writestr("torch/__init__.py", "x = 1\n")
        out.writestr("torch-2.0.0.dist-info/METADATA", metadata)
        out.writestr("torch-2.0.0.dist-info/RECORD", "stale\n")
    dest = tmp_path / "out"
    dest.mkdir()
    result = images.strip_requirements(wheel, dest, "notriton", ("triton",))
    assert result.name == "torch-2.0.0+notriton-cp311-cp311-manylinux_2_28_x86_64.whl"
    with zipfile.ZipFile(result) as new:
        text = new.read("torch-2.0.0.dist-info/METADATA").decode()
        records = dict(line.split(",", 1) for line in new.read("torch-2.0.0.dist-info/RECORD").decode().split())
        for name in ("torch/__init__.py", "torch-2.0.0.dist-info/METADATA"):
            digest = base64.urlsafe_b64encode(hashlib.sha256(new.read(name)).digest()).rstrip(b"=")
            assert records[name].startswith(f"sha256={digest.decode()},")
    assert "Version: 2.0.0+notriton" in text
    assert "Requires-Dist: triton" not in text
    assert "Requires-Dist: nvidia-cublas" in text and "Requires-Dist: filelock" in text


def test_image_names_are_normalized_as_containerd_names_them() -> None:
    assert images.normalize("sentinel-train:latest") == "docker.io/library/sentinel-train:latest"
    assert images.normalize("org/x") == "docker.io/org/x:latest"
    assert images.normalize("localhost/sentinel-pause:1") == "localhost/sentinel-pause:1"
    assert images.normalize("registry.example:5000/a/b:2") == "registry.example:5000/a/b:2"


def _dns_server(answers: dict[str, str]) -> tuple[int, threading.Thread]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))

    def serve() -> None:
        data, peer = sock.recvfrom(512)
        labels, offset = [], 12
        while data[offset]:
            labels.append(data[offset + 1:offset + 1 + data[offset]].decode())
            offset += 1 + data[offset]
        question = data[12:offset + 5]
        address = answers.get(".".join(labels))
        header = struct.pack(">HHHHHH", struct.unpack(">H", data[:2])[0],
                             0x8180 if address else 0x8183, 1, 1 if address else 0, 0, 0)
        answer = (b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 5, 4) + socket.inet_aton(address)
                  if address else b"")
        sock.sendto(header + question + answer, peer)
        sock.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return sock.getsockname()[1], thread


def test_dns_query_reads_a_records_and_nxdomain() -> None:
    port, thread = _dns_server({"head-svc.ns.svc.cluster.local": "10.88.0.7"})
    assert node.dns_query("127.0.0.1", "head-svc.ns.svc.cluster.local", port=port) == ["10.88.0.7"]
    thread.join()
    port, thread = _dns_server({})
    assert node.dns_query("127.0.0.1", "nothing.ns.svc.cluster.local", port=port) == []
    thread.join()


def test_the_stand_in_forwards_hosts_that_run_on_the_real_node() -> None:
    class Real(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps({"real": True, "path": self.path}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:
            pass

    real = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Real)
    threading.Thread(target=real.serve_forever, daemon=True).start()
    (port,) = free_ports(1)
    dashboard = StandInDashboard(port)
    dashboard.start()
    dashboard.upstream = lambda host: (("127.0.0.1", real.server_address[1])
                                       if host.startswith("real-head-svc.") else None)
    proxy = urllib.request.build_opener(urllib.request.ProxyHandler({"http": f"http://127.0.0.1:{port}"}))
    try:
        with proxy.open("http://real-head-svc.ns.svc.cluster.local:8265/api/jobs/x?y=1", timeout=5) as r:
            assert json.load(r) == {"real": True, "path": "/api/jobs/x?y=1"}
        with proxy.open("http://kwok-head-svc.other.svc.cluster.local:8265/api/jobs/x", timeout=5) as r:
            assert json.load(r)["status"] == "SUCCEEDED"  # the stand-in's answer
    finally:
        dashboard.stop()
        real.shutdown()
        real.server_close()
    assert [(r.namespace, bool(r.forwarded_to)) for r in dashboard.requests] == [("ns", True), ("other", False)]


def test_pods_reach_the_api_server_on_the_hosts_address_with_a_certificate_naming_it(tmp_path: Path) -> None:
    import ipaddress

    from cryptography import x509

    from tests.testenv import pki

    endpoints, endpoint_slice = node.api_endpoints(6443)
    assert endpoints["subsets"] == [{"addresses": [{"ip": node.HOST_ADDRESS}],
                                     "ports": [{"name": "https", "port": 6443, "protocol": "TCP"}]}]
    assert endpoints["metadata"]["labels"]["endpointslice.kubernetes.io/skip-mirror"] == "true"
    assert endpoint_slice["metadata"]["labels"]["kubernetes.io/service-name"] == "kubernetes"
    assert endpoint_slice["endpoints"][0]["addresses"] == [node.HOST_ADDRESS]
    assert endpoint_slice["ports"][0]["port"] == 6443
    certs = pki.create(tmp_path, extra_ips=(node.HOST_ADDRESS,))
    serving = x509.load_pem_x509_certificate(certs.serving_cert.read_bytes())
    names = serving.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(names.get_values_for_type(x509.IPAddress)) == {
        ipaddress.ip_address(ip) for ip in ("127.0.0.1", pki.SERVICE_IP, node.HOST_ADDRESS)}
