"""The project's exceptions. Library code raises these; only the CLI prints them and picks exit codes."""


class SentinelError(Exception):
    """An expected failure with a message that names the cause and the next step."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class ConfigError(SentinelError):
    """Bad flags, bad configuration or missing inputs: the user can fix it and retry."""

    exit_code = 2


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

    exit_code = 1


class WaitTimeout(SentinelError):
    """A bounded wait ran out."""

    exit_code = 3
