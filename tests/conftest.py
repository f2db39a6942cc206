"""The suite's fixtures, markers and ``--fast`` come from one plugin: tests/support/plugin.py."""

pytest_plugins = ["tests.support.plugin"]
