"""Backends run a command's request on a target: ``local`` (embedded Ray) or ``kubernetes`` (KubeRay)."""
