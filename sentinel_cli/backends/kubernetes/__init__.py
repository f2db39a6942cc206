"""The ``k8s`` target: KubeRay objects planned, applied and followed (``backend``), and the platform
``up``/``down``/``doctor`` (``platform``)."""
