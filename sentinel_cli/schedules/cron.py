"""A five-field cron expression, checked before anything is applied or printed: Kubernetes' CronJob
controller and cron(8) accept the same syntax (minute hour day-of-month month day-of-week, with
``*``, ``a-b``, ``*/n``, ``a-b/n``, lists, month and weekday names, and the ``@hourly`` …
macros), and a typo found by either only shows up as a schedule that never runs."""

from __future__ import annotations

import re

from sentinel_ml.errors import ConfigError

MACROS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
# name, lowest, highest, names (the first name is `lowest`)
FIELDS = (("minute", 0, 59, ()), ("hour", 0, 23, ()), ("day of month", 1, 31, ()),
          ("month", 1, 12, MONTHS), ("day of week", 0, 7, WEEKDAYS))
_PART = re.compile(r"^(?P<range>\*|[0-9a-z]+(-[0-9a-z]+)?)(/(?P<step>[0-9]+))?$")
EXAMPLE = '"0 3 * * *" (03:00 every day), "*/15 * * * *" (every 15 minutes), or @daily'


class CronError(ConfigError):
    """The cron expression is not one the CronJob controller (or cron) would run."""


def validate(expression: str) -> str:
    """``expression`` normalized to single spaces, or a CronError naming the field and the rule."""
    text = " ".join(expression.split())
    if text.startswith("@"):
        if text.lower() in MACROS:
            return text.lower()
        raise _error(text, f"{text} is not one of {', '.join(MACROS)}")
    parts = text.split(" ")
    if len(parts) != len(FIELDS):
        raise _error(text, f"it has {len(parts)} field{'s' if len(parts) != 1 else ''}, a cron expression has 5 "
                           "(minute hour day-of-month month day-of-week)")
    for part, field in zip(parts, FIELDS):
        _field(text, part, *field)
    return text


def _field(text: str, value: str, name: str, low: int, high: int, names: tuple[str, ...]) -> None:
    for item in value.lower().split(","):
        match = _PART.match(item)
        if not match:
            raise _error(text, f"{name} {value!r}: {item!r} is not *, N, N-M, */S or N-M/S")
        if match["step"] is not None and int(match["step"]) == 0:
            raise _error(text, f"{name} {value!r}: a step of 0")
        if match["range"] == "*":
            continue
        bounds = [_number(text, bound, name, low, high, names) for bound in match["range"].split("-")]
        if len(bounds) == 2 and bounds[0] > bounds[1]:
            raise _error(text, f"{name} {value!r}: the range {item} runs backwards")


def _number(text: str, token: str, name: str, low: int, high: int, names: tuple[str, ...]) -> int:
    if token in names:
        return names.index(token) + low
    if not token.isdigit():
        allowed = f" or a name ({', '.join(names)})" if names else ""
        raise _error(text, f"{name}: {token!r} is not a number{allowed}")
    number = int(token)
    if not low <= number <= high:
        raise _error(text, f"{name}: {number} is outside {low}-{high}")
    return number


def _error(text: str, why: str) -> CronError:
    return CronError(f"invalid cron expression {text!r}: {why}", hint=f"for example {EXAMPLE}")
