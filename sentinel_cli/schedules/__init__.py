"""Scheduled retraining (``sentinel schedule``): the cron expression (cron.py), what a schedule is
and the command line each run executes (spec.py), its Kubernetes objects as pure data (objects.py),
one run (run.py: train, then gate and promote or start a canary, by the CLI's own commands) and the
schedules on a cluster (kube.py: apply, list, delete, the last run's outcome)."""
