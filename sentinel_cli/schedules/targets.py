"""Where a schedule lives: on Kubernetes a CronJob (kube.py); locally a crontab line that Sentinel
prints and never installs. The commands ask here, as they ask ``backends`` for jobs."""

from __future__ import annotations

import sys
from pathlib import Path

from sentinel_cli.backends.results import ScheduleReport
from sentinel_cli.k8s.request import KubeRequest
from sentinel_cli.schedules.spec import ScheduleRequest, crontab_line, describe, run_args
from sentinel_ml.errors import ConfigError


def create(request: ScheduleRequest, target: str, deploy: KubeRequest) -> ScheduleReport:
    if target == "local":
        return local(request)
    from sentinel_cli.backends.kubernetes.plan import load_settings
    from sentinel_cli.backends.kubernetes.run import connect
    from sentinel_cli.schedules import kube

    settings = load_settings(deploy)
    with connect(settings) as client:
        return kube.apply(client, request, settings, deploy.dry_run)


def local(request: ScheduleRequest, workdir: Path | None = None) -> ScheduleReport:
    """The crontab line that runs ``request`` here, from this directory, with this ``sentinel``."""
    from sentinel_ml.paths import sentinel_home

    executable = sentinel_executable()
    log = sentinel_home() / "schedules" / f"{request.name}.log"
    return ScheduleReport(target="local", name=request.name, cron=request.cron, action=describe(request),
                          run=[*executable, *run_args(request, "local")],
                          crontab=crontab_line(request, executable, (workdir or Path.cwd()).absolute(), log),
                          installed=False)


def sentinel_executable() -> list[str]:
    """This ``sentinel`` by absolute path (cron's PATH is minimal), else this Python with ``-m``."""
    launched = Path(sys.argv[0])
    if launched.name == "sentinel" and launched.is_file():
        return [str(launched.absolute())]
    return [str(Path(sys.executable).absolute()), "-m", "sentinel_cli"]


def list_all(target: str, deploy: KubeRequest) -> ScheduleReport:
    k8s_only(target, "list")
    from sentinel_cli.backends.kubernetes.plan import load_settings
    from sentinel_cli.backends.kubernetes.run import connect
    from sentinel_cli.schedules import kube

    with connect(load_settings(deploy)) as client:
        namespace = "*" if deploy.all_namespaces else client.namespace
        return ScheduleReport(target="k8s", namespace=namespace, schedules=kube.rows(client, deploy.all_namespaces))


def delete(name: str, target: str, deploy: KubeRequest) -> ScheduleReport:
    k8s_only(target, "delete")
    from sentinel_cli.backends.kubernetes.plan import load_settings
    from sentinel_cli.backends.kubernetes.run import connect
    from sentinel_cli.schedules import kube

    with connect(load_settings(deploy)) as client:
        return kube.delete(client, name, deploy.dry_run)


def k8s_only(target: str, verb: str) -> None:
    if target != "k8s":
        raise ConfigError(f"schedule {verb} manages CronJobs on Kubernetes; a local schedule is a line in "
                          "your crontab, which Sentinel never installs",
                          hint="crontab -l (or crontab -e to remove it); on a cluster: --target k8s")
