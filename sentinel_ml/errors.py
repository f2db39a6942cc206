"""The project's exceptions: what went wrong, named by type. Library code raises these; the command
lines (``sentinel``, and the jobs' ``python -m sentinel_ml.train|tune``) print them and map each type
to an exit code (``sentinel_ml.entrypoint.EXIT_CODES``)."""


class SentinelError(Exception):
    """An expected failure with a message that names the cause and the next step."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class ConfigError(SentinelError):
    """Bad flags, bad configuration or missing inputs: the user can fix it and retry."""


class DataError(ConfigError):
    """The dataset cannot be downloaded, verified or parsed."""


class CheckpointNotFound(ConfigError):
    """No checkpoint matches the reference (latest, best, run id or URI)."""


class StorageError(SentinelError):
    """Local or S3 storage failed (permissions, missing bucket, network)."""


class ObjectNotFound(StorageError):
    """The addressed file or S3 object does not exist."""


class JobFailed(SentinelError):
    """A training, tuning or serving job ran and failed."""


class GateRefused(JobFailed):
    """The quality gate refused a candidate model: worse than what serves, or measured on other data (exit 1)."""


class WaitTimeout(SentinelError):
    """A bounded wait ran out."""


class Detached(SentinelError):
    """Ctrl-C while following a job: it keeps running; the message says how to reattach."""
