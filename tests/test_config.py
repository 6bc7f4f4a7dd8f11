"""The YAML config: defaults, KONG_HOME, and one-line errors for bad files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kong import db
from kong.config import Config, config_file, data_dir
from kong.errors import ConfigError, KongError
from kong.state import State
from tests.fixtures_state import write_config
from tests.kongcmd import KONG


def test_no_file_gives_one_local_profile(kong_home: Path) -> None:
    assert not (kong_home / "config.yml").exists()
    config = Config()
    assert list(config.profiles) == ["local"]
    assert config.default_profile == "local"
    assert config.profile().driver == "local"
    assert not config.profile().is_remote
    assert config.notify == []
    assert config.path is None


def test_kong_home_holds_config_database_and_job_dirs(kong_home: Path) -> None:
    assert config_file() == kong_home / "config.yml"
    assert data_dir() == kong_home
    config = Config()
    assert config.database_url == f"sqlite:///{kong_home / 'kong.sqlite'}"
    state = State.get_instance()
    assert (kong_home / "kong.sqlite").is_file()
    job = state.create_job(command="true")
    assert job.log_dir.startswith(str(kong_home / "jobs") + "/")
    assert job.output_dir.startswith(str(kong_home / "jobs") + "/")


def test_kong_home_config_file_is_read(kong_home: Path) -> None:
    write_config(
        kong_home,
        "default_profile: two\n"
        "profiles:\n"
        "  one:\n    driver: local\n"
        "  two:\n    driver: local\n    max_parallel: 2\n"
        "  c:\n    driver: local\n    host: login.example.org\n    port: 2222\n"
        "    user: alice\n    remote_dir: ~/.kong\n",
    )
    config = Config()
    assert config.path == kong_home / "config.yml"
    assert set(config.profiles) == {"one", "two", "c"}
    assert config.default_profile == "two"
    assert config.profile().options == {"max_parallel": 2}
    c = config.profile("c")
    assert (c.driver, c.host, c.port, c.user, c.remote_dir) == (
        "local", "login.example.org", 2222, "alice", "~/.kong"
    )
    assert c.is_remote


def test_database_url_from_config(kong_home: Path, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    write_config(kong_home, f"database: {url}\n")
    assert Config().database_url == url
    state = State.get_instance()
    assert state.ls() == ([], [])
    assert (tmp_path / "elsewhere.db").is_file()
    assert not (kong_home / "kong.sqlite").exists()


def test_config_dir_override_without_kong_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KONG_HOME", raising=False)
    monkeypatch.setenv("KONG_CONFIG_DIR", str(tmp_path / "cfg"))
    assert config_file() == tmp_path / "cfg" / "config.yml"


def test_data_dict_is_used_as_is(kong_home: Path) -> None:
    # a file that would fail must not be read when data is given
    write_config(kong_home, "bogus: [\n")
    config = Config(data={"profiles": {"x": {"driver": "local", "max_parallel": 3}}})
    assert list(config.profiles) == ["x"]
    assert config.default_profile == "x"
    assert config.profile().options == {"max_parallel": 3}
    assert Config(data={}).default_profile == "local"


def test_data_dict_is_validated(kong_home: Path) -> None:
    with pytest.raises(ConfigError, match=r"profiles\.x\.driver.*unknown driver 'pbs'"):
        Config(data={"profiles": {"x": {"driver": "pbs"}}})


BAD_CONFIGS = [
    pytest.param(
        "profiles:\n  local:\n    driver: local\n  c:\n    driver: pbs\n",
        5, "profiles.c.driver", "expected one of: local, slurm, htcondor, lsf",
        id="unknown-driver",
    ),
    pytest.param(
        "profiles:\n  c:\n    driver: local\n    host: h\n    port: \"x\"\n",
        5, "profiles.c.port", "expected an integer",
        id="wrong-type",
    ),
    pytest.param(
        "profiles:\n  local:\n    driver: local\n    max_parallel: two\n",
        4, "profiles.local.max_parallel", "expected an integer",
        id="wrong-type-driver-option",
    ),
    pytest.param(
        "default_profile: local\nprofile:\n  local:\n    driver: local\n",
        2, "profile", "unknown key (expected one of: ",
        id="unknown-top-level-key",
    ),
    pytest.param(
        "profiles:\n  local:\n    driver: local\n    acount: x\n",
        4, "profiles.local.acount", "unknown option for driver local (expected one of: ",
        id="unknown-profile-key",
    ),
    pytest.param(
        "profiles:\n  local:\n    driver: local\n  x: [1, 2\n",
        5, "", "YAML syntax error",
        id="yaml-syntax",
    ),
    pytest.param(
        "default_profile: gpu\nprofiles:\n  local:\n    driver: local\n",
        1, "default_profile", "no profile named 'gpu' (profiles: local)",
        id="default-profile-missing",
    ),
    pytest.param(
        "- just\n- a list\n", 0, "", "expected a mapping at the top level",
        id="not-a-mapping",
    ),
]


@pytest.mark.parametrize(("text", "line", "key", "expected"), BAD_CONFIGS)
def test_bad_config_is_one_line_naming_file_line_key_and_expectation(
    kong_home: Path, text: str, line: int, key: str, expected: str
) -> None:
    path = write_config(kong_home, text)
    with pytest.raises(ConfigError) as info:
        Config()
    message = str(info.value)
    assert "\n" not in message
    where = f"{path}:{line}: " if line else f"{path}: "
    assert message.startswith(where), message
    if key:
        assert f": {key}: " in message, message
    assert expected in message, message


@pytest.mark.parametrize(("text", "line", "key", "expected"), BAD_CONFIGS[:3])
def test_bad_config_refused_by_cli_without_traceback(
    kong_home: Path, text: str, line: int, key: str, expected: str
) -> None:
    import subprocess

    path = write_config(kong_home, text)
    proc = subprocess.run(
        [*KONG, "ls"], capture_output=True, text=True, env={**os.environ}, timeout=60
    )
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert str(path) in lines[0] and key in lines[0] and expected in lines[0]
    assert "Traceback" not in proc.stderr
    # nothing started: no database was made for a config that was refused
    assert not (kong_home / "kong.sqlite").exists()


def test_bad_config_is_a_kong_error(kong_home: Path) -> None:
    write_config(kong_home, "profiles: 3\n")
    with pytest.raises(KongError, match=r"config\.yml:1: profiles: expected a mapping"):
        State.get_instance()
    db.dispose()
