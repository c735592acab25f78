"""The store's shared fixtures: a database as an older Dreamgrid left it, to test what a migration does."""

import sqlite3
from pathlib import Path

import pytest

from bot.store.migrations import MIGRATIONS


@pytest.fixture
def database_without(tmp_path):
    """`database_without(name)`: an open sqlite3 connection to a file with every migration but `name` applied
    (and recorded), as a bot from before it left it; add rows, close it, then open it with Store."""
    def make(name: str) -> tuple[sqlite3.Connection, Path]:
        path = tmp_path / "old.sqlite3"
        old = sqlite3.connect(path)
        earlier = [(each, script) for each, script in MIGRATIONS if each != name]
        old.executescript("CREATE TABLE migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL);"
                          + "".join(script + f"INSERT INTO migrations VALUES ('{each}', 'then');"
                                    for each, script in earlier))
        return old, path

    return make
