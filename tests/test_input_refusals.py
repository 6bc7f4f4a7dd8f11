"""Words from the user that would break a job script or a listing are refused at
create time, in one line, and nothing is created."""

from __future__ import annotations

from pathlib import Path

import pytest

from kong.drivers.batch import walltime_minutes
from kong.errors import DriverError, FolderError
from kong.state import State
from tests.fixtures_state import write_config
from tests.oneline import kong, ok, refused

#: a Slurm profile whose host is never contacted: create-job does not talk to the cluster
SLURM = "profiles:\n  local:\n    driver: local\n  c:\n    driver: slurm\n    host: login.invalid\n"


@pytest.mark.parametrize("value", ["abc-1:00", "-5", "-30", "0", "0:00", "1:2:3:4", "²",
                                   "1:xx", "", -30, 0, True])
def test_walltime_garbage_is_a_driver_error(value: str | int) -> None:
    with pytest.raises(DriverError, match=r"walltime .*expected \[D-\]HH:MM:SS"):
        walltime_minutes(value)


@pytest.mark.parametrize(("value", "minutes"), [
    (90, 90), ("90", 90), ("1:30:00", 90), ("2-00:00:00", 2880), ("30:00", 30),
    ("0:30", 1), ("1-1", 1441),
])
def test_walltime_good_values(value: str | int, minutes: int) -> None:
    assert walltime_minutes(value) == minutes


@pytest.mark.parametrize("value", ["abc-1:00", "-5", "-30"])
def test_walltime_garbage_refused_at_create_time(kong_home: Path, value: str) -> None:
    write_config(kong_home, SLURM)
    refused(kong("create-job", "--profile", "c", "--arg", f"walltime={value}", "--", "true"),
            "walltime", value, "expected [D-]HH:MM:SS, MM:SS or minutes, more than zero")
    state = State.get_instance()
    with pytest.raises(DriverError, match="walltime"):
        state.create_job(command="true", profile="c", walltime=value)
    assert not state.ls("/")[1]  # nothing created


def test_env_name_with_shell_code_is_refused_and_nothing_runs(
    kong_home: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "INJ"
    name = f"X;touch {marker};Y"
    refused(kong("create-job", "-s", "-e", f"{name}=1", "--", "true"),
            "environment variable name", "expected letters, digits and _")
    state = State.get_instance()
    with pytest.raises(DriverError, match="environment variable name"):
        state.create_job(command="true", env={name: "1"})
    assert not state.ls("/")[1]
    assert not marker.exists()


def test_good_env_names_reach_the_job(kong_home: Path) -> None:
    out = ok(kong("create-job", "-s", "-e", "_A1=x y", "-e", "b=2", "--",
                  'echo "$_A1/$b"'))
    job_id = out.split()[2]
    ok(kong("wait", job_id, "-t", "60"))
    assert ok(kong("tail", job_id)).strip() == "x y/2"


@pytest.mark.parametrize("name", ["a\nb", "a\tb", "a\x1b[31mb", "a\rb", "a\x7fb"])
def test_folder_names_with_control_characters_are_refused(kong_home: Path, name: str) -> None:
    refused(kong("mkdir", name), "contains a control character")
    refused(kong("mkdir", "-p", f"/x/{name}/y"), "contains a control character")
    ok(kong("mkdir", "/ok"))
    refused(kong("mv", "/ok", f"/{name}"), "contains a control character")
    state = State.get_instance()
    with pytest.raises(FolderError, match="control character"):
        state.mkdir(name)
    assert [f.name for f in state.ls("/")[0]] == ["ok"]
