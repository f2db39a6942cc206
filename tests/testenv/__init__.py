"""A real Kubernetes test environment: etcd, control plane, kwok nodes, KubeRay operator."""
