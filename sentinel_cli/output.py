"""Print results as a table (for people) or JSON / YAML (for programs), always on stdout."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from enum import Enum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.table import Table


class OutputFormat(str, Enum):
    table = "table"
    json = "json"
    yaml = "yaml"


def emit(result: Any, fmt: OutputFormat, table: Callable[[Any], Table | str] | None = None) -> None:
    """``result`` (a typed result of ``backends.results``, or plain data) as JSON or YAML, or as
    ``table(result)`` for people."""
    from sentinel_cli import console
    from sentinel_cli.backends.results import to_data

    if fmt is OutputFormat.json:
        print(json.dumps(to_data(result), indent=2, default=str), file=console.data())
    elif fmt is OutputFormat.yaml:
        print(to_yaml(json.loads(json.dumps(to_data(result), default=str))), end="", file=console.data())
    else:
        console.out().print(table(result) if table else result)


def to_yaml(data: Any) -> str:
    """Block YAML; a multi-line string (a RayService's serveConfigV2) as a literal block, no folding."""
    import yaml

    class Dumper(yaml.SafeDumper):
        pass

    def text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
        plain = all(c == "\n" or (c.isprintable() and c not in "\x85\u2028\u2029") for c in value)
        style = "|" if "\n" in value and plain else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    Dumper.add_representer(str, text)
    return yaml.dump(data, Dumper=Dumper, sort_keys=False, width=10_000)


def key_value_table(rows: Sequence[tuple[str, Any]], title: str | None = None) -> Table:
    from rich.table import Table

    grid = Table(title=title, show_header=False, box=None, pad_edge=False)
    grid.add_column(style="bold")
    grid.add_column(overflow="fold")
    for key, value in rows:
        grid.add_row(key, literal("-" if value is None else str(value)))
    return grid


def records_table(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str]],
                  title: str | None = None, empty: str = "nothing to show") -> Table | str:
    """``columns``: (header, key) pairs."""
    from rich.table import Table

    if not rows:
        return empty
    table = Table(title=title, header_style="bold")
    for position, (header, _) in enumerate(columns):
        # The first column names the row (a run id, an object name): never break it.
        table.add_column(header, overflow="fold", no_wrap=position == 0)
    for row in rows:
        table.add_row(*(literal("-" if row.get(key) is None else _fmt(row.get(key))) for _, key in columns))
    return table


def literal(text: str):
    """``text`` as it is: a value from another system (a path, an error) is never read as markup."""
    from rich.text import Text

    return Text(text)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def ranking_rows(split: str, metrics: dict) -> list[tuple[str, str]]:
    """``u1 test ranking@10``: NDCG, Recall and coverage of the top 10 (none for runs from before them)."""
    from sentinel_ml.models.metrics import COVERAGE, NDCG, RANKING_USERS, RECALL, K

    if NDCG not in metrics:
        return []
    return [(f"{split} test ranking@{K}", f"NDCG {metrics[NDCG]:.4f}, Recall {metrics[RECALL]:.4f}, coverage "
                                          f"{metrics[COVERAGE]:.4f} ({int(metrics.get(RANKING_USERS, 0)):,} users)")]
