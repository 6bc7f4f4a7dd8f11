"""Fixtures for a kong of its own per test: a fresh KONG_HOME, database and State."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from kong import db
from kong.config import Config
from kong.state import State


@pytest.fixture
def kong_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty KONG_HOME (no config file): kong's data and config live here."""
    home = tmp_path / "kong-home"
    home.mkdir()
    monkeypatch.setenv("KONG_HOME", str(home))
    monkeypatch.delenv("KONG_CONFIG_DIR", raising=False)
    yield home
    db.dispose()


def write_config(home: Path, text: str) -> Path:
    path = home / "config.yml"
    path.write_text(text)
    return path


@pytest.fixture
def state(kong_home: Path) -> State:
    """A State on a fresh database with the built-in config (one `local` profile)."""
    return State.get_instance()


def make_state(config: Config) -> State:
    db.init(config.database_url)
    from kong.model.folder import Folder

    return State(config, Folder.get_root())
