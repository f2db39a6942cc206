"""``sentinel schedule``: retrain on a schedule (a CronJob running Sentinel's CLI image on
Kubernetes; locally, the crontab line that would do the same), list and delete schedules, and
``schedule run``: what each run executes."""

from __future__ import annotations

import shlex
from dataclasses import replace
from typing import Annotated

import typer

from sentinel_cli import options
from sentinel_cli.backends import target_name
from sentinel_cli.k8s.request import KubeRequest
from sentinel_cli.output import OutputFormat, emit, key_value_table, records_table
from sentinel_cli.schedules.spec import DEFAULT_NAME, METRICS

app = typer.Typer(help="Retrain on a schedule, then gate, promote or start a canary (k8s: a CronJob; "
                       "local: prints the crontab line).", no_args_is_help=True)
Metric = options.choice("Metric", METRICS)
EXTRA = {"allow_extra_args": True, "ignore_unknown_options": True}
NameOpt = Annotated[str, typer.Option("--name", help="The schedule's name (its CronJob's).")]
PromoteOpt = Annotated[bool, typer.Option(
    "--promote-if-better", help="Gate each run's model against what is serving (sentinel promote): promote "
    "it if it is no worse, else keep serving and record the refusal with both numbers.")]
MetricOpt = Annotated[Metric, typer.Option(help="The gate's metric.", case_sensitive=False)]
ToleranceOpt = Annotated[float | None, typer.Option(
    min=0, help="How much worse the gate lets a candidate be. Default: promote's.", show_default=False)]
CanaryOpt = Annotated[float | None, typer.Option(
    help="Serve each run's model to this percent of users beside the current one (sentinel serve --canary), "
         "after the gate with --promote-if-better.", show_default=False)]
TRAIN_FLAGS = ("Any other flag is a `sentinel train` flag for each run (--epochs 5, --data s3://…, --split "
               "temporal …); put them after `--` when one could be taken for the schedule's own.")


@app.command("train", context_settings=EXTRA, epilog=TRAIN_FLAGS)
@options.kube_options("profile", "namespace", "sets", "dry_run")
def train(
    ctx: typer.Context,
    cron: Annotated[str, typer.Option("--cron", help='When: a cron expression ("0 3 * * *": 03:00 daily; '
                                      "the cluster's time zone) or @daily, @hourly …")],
    name: NameOpt = DEFAULT_NAME,
    promote_if_better: PromoteOpt = False,
    metric: MetricOpt = Metric.rmse,
    tolerance: ToleranceOpt = None,
    canary: CanaryOpt = None,
    target: options.TargetOpt = None,
    output: options.OutputOpt = OutputFormat.table,
    deploy: KubeRequest = KubeRequest(),
) -> None:
    """Retrain on a schedule: each run trains on the current data, then gates, promotes or starts a canary."""
    from sentinel_cli.schedules import cron as crontab
    from sentinel_cli.schedules import targets
    from sentinel_cli.schedules.spec import ScheduleRequest

    request = ScheduleRequest(name=name, cron=crontab.validate(cron), train_args=tuple(ctx.args),
                              promote_if_better=promote_if_better, metric=metric.value, tolerance=tolerance,
                              canary=canary)
    _check_train_flags(ctx, request.train_args)
    where = target_name(target, deploy.overrides.profile)
    if where == "k8s":
        from sentinel_cli.schedules.objects import schedule_name

        schedule_name(name)
    report = targets.create(request, where, deploy)
    if report.target == "local" and output is OutputFormat.table:
        from sentinel_cli import console

        # The line alone on stdout, to paste into `crontab -e` (or append with crontab -l | … | crontab -).
        console.out().print(report.crontab, markup=False, highlight=False, soft_wrap=True)
        console.err().print("not installed: add this line with `crontab -e`; each run appends to the log it "
                            "names", markup=False, highlight=False)
        return
    emit(report, output, _created_table)


@app.command("list")
@options.kube_options("profile", "namespace")
def list_(
    target: options.TargetOpt = None,
    output: options.OutputOpt = OutputFormat.table,
    all_namespaces: options.AllNamespacesOpt = False,
    deploy: KubeRequest = KubeRequest(),
) -> None:
    """The retraining schedules on Kubernetes, each with its newest run and what that run did."""
    from sentinel_cli.schedules import targets

    report = targets.list_all(target_name(target, deploy.overrides.profile), replace(deploy, all_namespaces=all_namespaces))
    emit(report, output, lambda r: schedules_table(r.schedules, r.namespace))


@app.command("delete")
@options.kube_options("profile", "namespace", "dry_run")
def delete(
    name: Annotated[str, typer.Argument(help="The schedule (sentinel schedule list).")],
    target: options.TargetOpt = None,
    output: options.OutputOpt = OutputFormat.table,
    deploy: KubeRequest = KubeRequest(),
) -> None:
    """Delete a schedule: its CronJob (with its Jobs and pods), profile, Role and ServiceAccount."""
    from sentinel_cli.backends.results import to_data
    from sentinel_cli.schedules import targets

    report = targets.delete(name, target_name(target, deploy.overrides.profile), deploy)
    emit(report, output, lambda r: key_value_table([(k, v) for k, v in to_data(r).items()]))


@app.command("run", context_settings=EXTRA, epilog=TRAIN_FLAGS)
def run(
    ctx: typer.Context,
    name: NameOpt = DEFAULT_NAME,
    promote_if_better: PromoteOpt = False,
    metric: MetricOpt = Metric.rmse,
    tolerance: ToleranceOpt = None,
    canary: CanaryOpt = None,
    target: options.TargetOpt = None,
) -> None:
    """One run of a schedule, now (what its CronJob or crontab line executes): the outcome as JSON on stdout."""
    from pathlib import Path

    from sentinel_cli import console
    from sentinel_cli.schedules import objects
    from sentinel_cli.schedules import run as runs
    from sentinel_cli.schedules.spec import ScheduleRequest

    request = ScheduleRequest(name=name, cron="@daily", train_args=tuple(ctx.args),
                              promote_if_better=promote_if_better, metric=metric.value, tolerance=tolerance,
                              canary=canary)
    outcome = runs.execute(request, target_name(target), Path(objects.TERMINATION_LOG))
    console.out().print(outcome.to_json(), markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(outcome.exit_code if outcome.outcome == runs.FAILED else 0)


def _check_train_flags(ctx: typer.Context, args: tuple[str, ...]) -> None:
    """The train flags parse as `sentinel train` parses them (a typo fails now, not at 03:00)."""
    from sentinel_ml.errors import ConfigError

    root = ctx.find_root()
    command = root.command.get_command(root, "train")
    try:
        command.make_context("train", list(args), parent=root)
    except Exception as e:  # Typer's click: a usage error (NoSuchOption, BadParameter …) formats itself
        if not hasattr(e, "format_message"):
            raise
        raise ConfigError(f"train flags of the schedule: {e.format_message()}",
                          hint="see sentinel train --help") from None


def _created_table(report):
    rows = [("schedule", report.name), ("cron", report.cron), ("each run", report.action),
            ("runs", shlex.join(report.run))]
    rows += [("namespace", report.namespace), ("applied" if not report.dry_run else "validated (dry run)",
                                                   ", ".join(report.applied))]
    return key_value_table(rows)


SCHEDULE_COLUMNS = [("name", "name"), ("namespace", "namespace"), ("cron", "cron"), ("each run", "action"),
                    ("last job", "last_job"), ("job", "job_state"), ("outcome", "outcome"), ("detail", "detail")]


def schedules_table(rows, namespace: str, title: str | None = None):
    from sentinel_cli.backends.results import to_data

    columns = SCHEDULE_COLUMNS if namespace == "*" else [c for c in SCHEDULE_COLUMNS if c[1] != "namespace"]
    data = [{**to_data(r), "detail": _one_line(r.detail)} for r in rows]
    return records_table(data, columns, title=title or f"schedules in namespace {namespace}",
                         empty=f"no schedules in namespace {namespace}: sentinel schedule train --cron … --target k8s")


def _one_line(text: str | None) -> str | None:
    return " / ".join(line.strip() for line in text.splitlines() if line.strip()) if text else text
