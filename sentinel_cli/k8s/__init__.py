"""Kubernetes I/O and objects: the one client funnel and kinds table (``client``), settings and the
profile (``settings``), the command's options (``request``), template values (``manifests``) and
rendering (``render``), waits and log following (``watch``), platform objects and monitoring."""
