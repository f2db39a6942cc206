"""The ``k8s`` target: KubeRay objects planned (``plan``), applied and followed (``run``), looked at
(``inspect``), behind the ``JobTarget`` of ``backend``; and the platform's ``up``/``down``/``doctor``
(``platform``)."""
