"""Config values that parse but cannot work are refused at start, in one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from kong.config import Config
from kong.errors import ConfigError
from kong.state import State
from tests.fixtures_state import write_config
from tests.oneline import kong, refused

SSH = "profiles:\n  c:\n    driver: slurm\n    host: login.example.org\n"

REFUSED = [
    pytest.param("database: notaurl\n", 1, "database", "not a database URL: 'notaurl'",
                 id="database-not-a-url"),
    pytest.param("database: nosuchdb://host/x\n", 1, "database",
                 "unknown database kind 'nosuchdb'", id="database-unknown-kind"),
    pytest.param(SSH + "    max_connections: 0\n", 5, "profiles.c.max_connections",
                 "expected at least 1, got 0", id="max-connections-0"),
    pytest.param(SSH + "    max_connections: -3\n", 5, "profiles.c.max_connections",
                 "expected at least 1, got -3", id="max-connections-negative"),
    pytest.param(SSH + "    connect_interval: 1.0e+308\n", 5, "profiles.c.connect_interval",
                 "expected seconds from 0 to 3600, got 1e+308", id="connect-interval-huge"),
    pytest.param(SSH + "    connect_interval: -1\n", 5, "profiles.c.connect_interval",
                 "expected seconds from 0 to 3600", id="connect-interval-negative"),
    pytest.param(SSH + '    remote_dir: "/scratch/a\\nb"\n', 5, "profiles.c.remote_dir",
                 "control characters ('\\n') are not allowed", id="remote-dir-newline"),
    pytest.param("notify:\n  - notaurl\n", 1, "notify", "'notaurl' is not a notification URL",
                 id="notify-not-a-url"),
    pytest.param("notify:\n  - url: ntfy://t\n    on: [finished, sometimes]\n", 1, "notify",
                 "unknown events ['sometimes']", id="notify-unknown-event"),
]


@pytest.mark.parametrize(("text", "line", "key", "expected"), REFUSED)
def test_refused_by_the_api_naming_file_line_and_key(
    kong_home: Path, text: str, line: int, key: str, expected: str
) -> None:
    path = write_config(kong_home, text)
    with pytest.raises(ConfigError) as info:
        State.get_instance()
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}:{line}: {key}: "), message
    assert expected in message, message
    assert not (kong_home / "kong.sqlite").exists()  # nothing started


@pytest.mark.parametrize(("text", "line", "key", "expected"), REFUSED)
def test_refused_by_the_cli_in_one_line(
    kong_home: Path, text: str, line: int, key: str, expected: str
) -> None:
    path = write_config(kong_home, text)
    refused(kong("ls"), f"{path}:{line}: {key}: ", expected)
    assert not (kong_home / "kong.sqlite").exists()


def test_sane_connection_values_pass(kong_home: Path) -> None:
    config = Config(data={"profiles": {"c": {
        "driver": "slurm", "host": "h", "max_connections": 1, "connect_interval": 0.5,
        "remote_dir": "~/kong runs"}}})
    profile = config.profile("c")
    assert (profile.max_connections, profile.connect_interval, profile.remote_dir) == (
        1, 0.5, "~/kong runs")


def test_database_driver_not_installed_names_the_package(kong_home: Path) -> None:
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.fail("this test needs a machine without psycopg (the PostgreSQL driver)")
    write_config(kong_home, "database: postgresql+psycopg://kong:secret@db.example.org/kong\n")
    line = refused(kong("ls"), "needs the Python package psycopg[binary]",
                   "pip install 'psycopg[binary]'")
    assert "secret" not in line  # the password is not printed
    from kong.db import DatabaseError

    with pytest.raises(DatabaseError, match=r"psycopg\[binary\]"):
        State.get_instance()


def test_notify_url_apprise_cannot_parse_stops_wait_before_waiting(kong_home: Path) -> None:
    """The config check only sees the URL's form (apprise takes a second to load); a
    well-formed URL apprise does not know stops ``wait --notify`` before it waits."""
    state = State.get_instance()
    job = state.create_job(command="sleep 600")
    state.submit_job(job)
    write_config(kong_home, "notify:\n  - nosuchservice://x\n")
    try:
        proc = kong("wait", "--notify", str(job.job_id), "-t", "600")
        refused(proc, "notify: nosuchservice://x/... is not a notification URL")
    finally:
        state.kill_job(job)
