"""Checklist items shared by ``sentinel up`` (one per component) and ``sentinel doctor`` (one per check).

An item has a name, a state (``pass``/``fail``/``skip`` for checks; ``created``, ``configured``,
``unchanged``, ``would apply``… for components), what was found, and, when it failed, the fix.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

from sentinel_ml.errors import SentinelError

PASS, FAIL, SKIP = "pass", "fail", "skip"


@dataclass(frozen=True)
class Item:
    name: str
    state: str
    detail: str = ""
    fix: str | None = None

    @property
    def failed(self) -> bool:
        return self.state == FAIL


def run_check(name: str, check: Callable[[], str | Item]) -> Item:
    """``check()`` returns what it found (pass) or an Item; a SentinelError becomes a fail with its hint."""
    try:
        found = check()
    except SentinelError as e:
        return Item(name, FAIL, e.message, e.hint)
    return found if isinstance(found, Item) else Item(name, PASS, found)


def report(target: str, items: Iterable[Item], **extra: Any) -> dict[str, Any]:
    items = list(items)
    return {"target": target, **extra, "ok": not any(i.failed for i in items),
            "items": [asdict(i) for i in items]}


COLUMNS = [("item", "name"), ("state", "state"), ("found", "detail"), ("fix", "fix")]


def table(result: dict[str, Any]):
    from rich.table import Table
    from rich.text import Text

    from sentinel_cli.output import literal

    grid = Table(title=f"target {result['target']}", header_style="bold")
    for header, _ in COLUMNS:
        grid.add_column(header, overflow="fold", no_wrap=header == "item")
    colours = {PASS: "green", FAIL: "bold red", SKIP: "dim"}
    for item in result["items"]:
        colour = colours.get(item["state"], "cyan")
        grid.add_row(item["name"], Text(item["state"], style=colour), literal(item["detail"] or "-"),
                     literal(item["fix"] or ""))
    return grid
