"""Training: a run's config (``config``), one process's Lightning loop (``loop``), the Ray Train worker
group (``worker_group``) and a whole run with its checkpoints and index record (``run``)."""
