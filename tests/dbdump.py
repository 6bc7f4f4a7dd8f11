"""The whole database as SQL text, read through a connection of its own.

Tests compare a dump before and after a refused operation: "nothing changed" means
every row of every table, not only the ones the test thought of.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path


def dump(home: Path) -> str:
    conn = sqlite3.connect(home / "kong.sqlite")
    try:
        return "\n".join(conn.iterdump())
    finally:
        conn.close()
