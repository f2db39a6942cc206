"""How `sentinel predict` sends the ids typed on its command line: integers only where the text is an
integer as a ratings table writes one, so string ids such as ``007`` reach the server as written."""

from __future__ import annotations

import pytest

from sentinel_cli.commands.predict import as_id, parse_ids
from sentinel_ml.errors import ConfigError
from sentinel_ml.serving.catalogue import normalize


@pytest.mark.parametrize("text, sent", [
    ("42", 42), (" -7 ", -7), ("0", 0), ("9223372036854775807", 9223372036854775807),
    ("007", "007"), ("+7", "+7"), ("4.0", "4.0"), ("u-17", "u-17"), ("-", "-"), ("00", "00"),
    ("9223372036854775808", "9223372036854775808"),  # beyond int64: a string id, as the tables read it
])
def test_an_id_is_an_integer_only_where_the_tables_read_one(text, sent) -> None:
    assert as_id(text) == sent and type(as_id(text)) is type(sent)


def test_string_ids_keep_their_text_and_integer_servers_still_read_them() -> None:
    assert parse_ids("m-1, 007,42") == ["m-1", "007", 42]
    assert normalize(as_id("007"), "string") == "007"  # was sent as 7: the id "7", not "007"
    assert normalize(as_id("007"), "int") == 7 and normalize(as_id("42"), "string") == "42"
    with pytest.raises(ConfigError):
        as_id("  ")
