"""What the tests share: the suite's pytest plugin (plugin.py, its fixtures in data, local_ray, s3, k8s),
and helpers that drive real processes (cli, processes, ray_nodes, load, wrk, serving, ray_train, ports,
node).

Dependencies point one way: bench/ imports these helpers, never the reverse. ports.py imports only
the standard library, so that tests/testenv's command line (run by the system Python in .ci/run)
can use it.
"""
