"""kong-batch's own tests, ported to kong's public API on the local profile.

The reference is paulgessinger/kong (kong-batch): tests/test_state.py, tests/test_folder.py,
tests/test_job.py and tests/driver/test_local_driver.py. Each test below follows one of
them (named in its docstring) through the API a kong-batch script uses: ``State``,
``Folder`` and ``Job``. Where kong deliberately behaves otherwise the test says so in a
line starting with ``DIFFERENCE:``, and README.md's "Choices" has the same bullet.

Real SQLite file, real job processes (the local driver); no mocks except for the
``confirm`` callbacks, which are the API's own hook.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from unittest.mock import Mock

import pytest

import kong
import kong.state
from kong import db
from kong.cli import run
from kong.errors import KongError
from kong.model.folder import Folder
from kong.model.job import Job
from kong.state import (
    CannotCreateError,
    CannotRemoveIsFolder,
    CannotRemoveRoot,
    DoesNotExist,
    State,
)
from tests.dbdump import dump
from tests.kongcmd import KONG


def until(condition: Callable[[], bool], timeout: float = 30, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def ids(jobs: object) -> list[int]:
    return [j.job_id for j in jobs]  # type: ignore[attr-defined]


@pytest.fixture
def tree(state: State) -> Folder:
    """kong-batch's ``tree``: /f1, /f2/{alpha,beta,gamma/delta}, /f3/omega."""
    root = Folder.get_root()
    root.add_folder("f1")
    f2 = root.add_folder("f2")
    f2.add_folder("alpha")
    f2.add_folder("beta")
    f2.add_folder("gamma").add_folder("delta")
    root.add_folder("f3").add_folder("omega")
    return root


@pytest.fixture
def sample_jobs(tree: Folder, state: State) -> list[Job]:
    """kong-batch's ``sample_jobs``: 3 in /, 4 in /f1, 4 in /f2, 2 in /f2/beta."""
    layout = ["/"] * 3 + ["/f1"] * 4 + ["/f2"] * 4 + ["/f2/beta"] * 2
    return [state.create_job(command="sleep 0.1", folder=f) for f in layout]


def finish(state: State, jobs: list[Job]) -> None:
    state.wait(jobs, notify=False, timeout=60, poll_interval=0.05)


# -- State: cd, pushd ------------------------------------------------------------------


def test_cd(state: State) -> None:
    """test_state.py::test_cd"""
    root = Folder.get_root()
    assert state.cwd == root
    with pytest.raises(DoesNotExist):  # kong-batch: peewee.DoesNotExist
        state.cd("nope")
    assert state.cwd == root
    nope = root.add_folder("nope")
    state.cd("nope")
    assert state.cwd == nope
    state.cd("")
    assert state.cwd == root
    # DIFFERENCE: `..` of the root is the root, as in a shell (kong-batch refused it).
    state.cd("..")
    assert state.cwd == root
    state.cd("../nope")
    assert state.cwd == nope
    state.cd("/")
    more = root.add_folder("more")
    another = nope.add_folder("another")
    state.cd("/nope/another")
    assert state.cwd == another
    state.cd("/../")  # DIFFERENCE: the root again (kong-batch refused it)
    assert state.cwd == root
    state.cd("/nope/another")
    state.cd("..")
    assert state.cwd == nope
    state.cd("/more")
    assert state.cwd == more
    state.cd(root)
    assert state.cwd == root
    state.cd(more)
    assert state.cwd == more


def test_cd_and_pushd_invalid_types(state: State) -> None:
    """test_state.py::test_cd_invalid, test_cwd_context_manager"""
    with pytest.raises(TypeError):
        state.cd(42)  # type: ignore[arg-type]
    with pytest.raises(TypeError), state.pushd(42):  # type: ignore[arg-type]
        pass
    assert state.cwd == Folder.get_root()


def test_cwd_context_manager(state: State) -> None:
    """test_state.py::test_cwd_context_manager"""
    root = Folder.get_root()
    f1 = root.add_folder("f1")
    with state.pushd(f1):
        assert state.cwd == f1
    assert state.cwd == root
    with state.pushd("f1"):
        assert state.cwd == f1
    assert state.cwd == root


# -- State: mv -------------------------------------------------------------------------


def test_mv_folder(state: State) -> None:
    """test_state.py::test_mv_folder"""
    root = Folder.get_root()
    f1, f2, f3, f4, f5 = (root.add_folder(n) for n in ("f1", "f2", "f3", "f4", "f5"))
    assert len(root.children) == 5
    state.mv("f1", f2)
    assert len(root.children) == 4
    assert f2.children == [f1]
    f1.reload()
    assert f1.parent == f2
    state.mv(f3, "f3x")  # rename
    assert len(root.children) == 4
    assert f3.name == "f3x"
    state.mv(f3, "f4")  # move
    assert f4.children == [f3]
    assert f3.parent == f4
    assert f3.name == "f3x"
    state.cd("f2")
    state.mv(f5, "../f4/f5x")  # move and rename at once
    assert len(f4.children) == 2
    assert f5.name == "f5x"
    assert f5.parent == f4
    state.cd("/")
    with pytest.raises(ValueError):
        state.mv(f1, "/nope/blub")
    with pytest.raises(DoesNotExist):
        state.mv("../nope", f1)


def test_mv_job(state: State) -> None:
    """test_state.py::test_mv_job"""
    root = Folder.get_root()
    f1, f2 = (root.add_folder(n) for n in ("f1", "f2"))
    j1, j2, j3, j4, j5 = (state.create_job(command="sleep 1") for _ in range(5))
    assert len(root.jobs) == 5
    state.mv(j1, "f1")
    j1.reload()
    assert j1.folder == f1
    assert len(f1.jobs) == 1
    assert len(root.jobs) == 4
    state.mv(str(j2.job_id), f2)
    assert j2.folder == f2
    assert len(f2.jobs) == 1
    assert len(root.jobs) == 3
    state.cd(f2)
    state.mv(j3, ".")
    assert j3.folder == f2
    state.mv(j2, "..")
    assert j2.folder == root
    state.mv(f"../{j4.job_id}", "../f1")  # folder/<id>: the job in that folder
    assert j4.folder == f1
    state.cd(root)
    with pytest.raises(ValueError):  # jobs cannot be renamed
        state.mv(f"{j5.job_id}", "42")


def test_mv_bulk_job(state: State) -> None:
    """test_state.py::test_mv_bulk_job"""
    root = Folder.get_root()
    f1, f2, f3 = (root.add_folder(n) for n in ("f1", "f2", "f3"))
    state.cwd = f1
    jobs = [state.create_job(command="sleep 1") for _ in range(5)]
    assert len(f1.jobs) == 5
    state.cwd = root
    state.mv("f1/*", f3)
    assert len(f1.jobs) == 0 and len(f3.jobs) == 5
    assert len(root.children) == 3
    assert all(j.folder == f3 for j in jobs)
    state.cwd = f2
    state.mv("../f3/*", ".")
    assert len(f3.jobs) == 0 and len(f2.jobs) == 5
    assert all(j.folder == f2 for j in jobs)


def test_mv_bulk_both_moves_all_but_the_destination(state: State, kong_home: Path) -> None:
    """test_state.py::test_mv_bulk_both: ``mv("*", "f2")`` moves everything but f2 and
    says it could not move f2."""
    root = Folder.get_root()
    f1, f2 = (root.add_folder(n) for n in ("f1", "f2"))
    f3 = f1.add_folder("f3")
    with state.pushd(f1):
        j1 = state.create_job(command="sleep 1")
    state.mv("f1/*", "f2")
    assert j1.folder == f2
    assert f3.parent == f2
    state.mv(f3, "/")
    state.mv(j1, "/")
    moved = state.mv("*", "f2")
    assert sorted(o.path if isinstance(o, Folder) else str(o.job_id) for o in moved) == [
        "/f2/f1", "/f2/f3", str(j1.job_id)
    ]
    assert [(f.path, reason) for f, reason in moved.skipped] == [("/f2", "/f2 is the destination")]
    for obj in (f1, f2, f3, j1):
        obj.reload()
    assert f1.parent == f2
    assert f2.parent == root
    assert f3.parent == f2
    assert j1.folder == f2
    # nothing left to move but the destination: refused, nothing changed
    before = dump(kong_home)
    with pytest.raises(KongError, match="/f2 is the destination"):
        state.mv("*", "f2")
    assert dump(kong_home) == before


def test_mv_bulk_both_cli_reports_what_stayed(state: State, kong_home: Path) -> None:
    state.mkdir("/f1")
    state.mkdir("/f2")
    state.create_job(command="true")
    db.dispose()
    proc = subprocess.run([*KONG, "mv", "*", "/f2"], capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "moved 2 item(s)", "not moved: /f2: /f2 is the destination"
    ]
    assert run(["ls", "/f2"]) == 0


def test_mv_glob_with_two_folders_of_one_name(state: State, kong_home: Path) -> None:
    """Not in kong-batch: ``*/sub`` matches /a/sub and /b/sub; the first moves, the
    second would take the same name and stays (no database error)."""
    for path in ("/a/sub", "/b/sub", "/dest"):
        state.mkdir(path, create_parent=True)
    moved = state.mv("*/sub", "/dest")
    assert [f.path for f in moved] == ["/dest/sub"]  # type: ignore[union-attr]
    assert [(f.path, r) for f, r in moved.skipped] == [
        ("/b/sub", "/dest/sub is taken by another moved folder")
    ]
    assert Folder.find_by_path("/b/sub") is not None


def test_mv_invalid_types(state: State, kong_home: Path) -> None:
    """test_state.py::test_mv_invalid"""
    root = Folder.get_root()
    f1, _f2 = (root.add_folder(n) for n in ("f1", "f2"))
    state.create_job(command="sleep 1")
    before = dump(kong_home)
    with pytest.raises(TypeError):
        state.mv(f1, 42)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        state.mv(4.5, "x")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        state.mv(f1, None)  # type: ignore[arg-type]
    # DIFFERENCE: an int source is a job id (kong-batch: TypeError); job 42 does not exist.
    with pytest.raises(DoesNotExist):
        state.mv(42, f1)
    assert dump(kong_home) == before


def test_mv_bulk_folder(state: State) -> None:
    """test_state.py::test_mv_bulk_folder"""
    root = Folder.get_root()
    r1, r2 = (root.add_folder(n) for n in ("r1", "r2"))
    folders = [r1.add_folder(f"f{n}") for n in range(5)]
    assert len(r1.children) == 5 and len(r2.children) == 0
    state.mv("r1/*", "r2")
    assert len(r1.children) == 0 and len(r2.children) == 5
    assert all(f.parent == r2 for f in folders)
    state.cwd = r1
    state.mv("../r2/*", ".")
    assert len(r1.children) == 5 and len(r2.children) == 0
    assert all(f.parent == r1 for f in folders)


# -- State: get_folders, mkdir ---------------------------------------------------------


def test_get_folders(state: State) -> None:
    """test_state.py::test_get_folders, test_get_folders_pattern"""
    root = Folder.get_root()
    folders = [root.add_folder(f"f{n}") for n in range(10)]
    assert state.get_folders("*") == folders
    with pytest.raises(ValueError) as caught:
        state.get_folders("nope/*")
    assert isinstance(caught.value, KongError)
    with pytest.raises(ValueError):
        state.get_folders("nope")
    alpha = [root.add_folder(f"alpha_{n}") for n in range(10)]
    beta = [root.add_folder(f"beta_{n}") for n in range(10)]
    assert state.get_folders("alpha_*") == alpha
    assert state.get_folders("beta_*") == beta


def test_mkdir(state: State) -> None:
    """test_state.py::test_mkdir"""
    root = Folder.get_root()
    sub = root.add_folder("sub")
    for cwd in (root, sub):
        state.cwd = cwd
        assert cwd.subfolder("alpha") is None
        state.mkdir("alpha")
        alpha = cwd.subfolder("alpha")
        assert alpha is not None
        state.mkdir("alpha/beta")
        beta = alpha.subfolder("beta")
        assert beta is not None
        # DIFFERENCE: at the root, `../nope` is `/nope` (kong-batch refused it).
        state.mkdir("../nope", exist_ok=cwd == sub)
        assert root.subfolder("nope") is not None
        with pytest.raises(CannotCreateError):
            state.mkdir("alpha")
        with pytest.raises(CannotCreateError):
            state.mkdir("omega/game")
        state.cwd = beta
        state.mkdir("../../gamma")
        assert cwd.subfolder("gamma") is not None


def test_mkdir_existing(state: State) -> None:
    """test_state.py::test_mkdir_existing"""
    root = Folder.get_root()
    root.add_folder("f1")
    with pytest.raises(CannotCreateError):
        state.mkdir("f1")
    assert len(root.children) == 1
    assert state.mkdir("f1", exist_ok=True) == root.subfolder("f1")
    assert len(root.children) == 1


def test_mkdir_create_parent(state: State) -> None:
    """test_state.py::test_mkdir_create_parent"""
    with pytest.raises(CannotCreateError):
        state.mkdir("/a1/b2/c3/d4")
    assert Folder.find_by_path("/a1", state.cwd) is None
    state.mkdir("/a1/b2/c3/d4", create_parent=True)
    for path in ("/a1", "/a1/b2", "/a1/b2/c3", "/a1/b2/c3/d4"):
        assert Folder.find_by_path(path, state.cwd) is not None
    state.mkdir("/a1/b2/c3/d5", create_parent=True)
    state.mkdir("beta", create_parent=True)
    assert Folder.find_by_path("/beta", state.cwd) is not None
    state.mkdir("/basic2", create_parent=True)
    assert Folder.find_by_path("/basic2", state.cwd) is not None


# -- State: rm -------------------------------------------------------------------------


def test_rm_folder(state: State) -> None:
    """test_state.py::test_rm_folder"""
    root = Folder.get_root()
    with pytest.raises(DoesNotExist):
        state.rm("../nope")
    with pytest.raises(CannotRemoveRoot):
        state.rm("/")
    root.add_folder("alpha")
    confirm = Mock(return_value=False)
    with pytest.raises(CannotRemoveIsFolder):
        state.rm("alpha", confirm=confirm)
    assert confirm.call_count == 0
    assert not state.rm("alpha", confirm=confirm, recursive=True)
    confirm.assert_called_once()
    assert root.subfolder("alpha") is not None
    confirm = Mock(return_value=True)
    with pytest.raises(CannotRemoveIsFolder):
        state.rm("alpha", confirm=confirm)
    assert confirm.call_count == 0
    assert state.rm("alpha", confirm=confirm, recursive=True)
    confirm.assert_called_once()
    assert root.subfolder("alpha") is None
    beta = root.add_folder("beta")
    beta.add_folder("gamma")
    state.rm("/beta/gamma", recursive=True)
    assert beta.subfolder("gamma") is None
    state.rm(beta, recursive=True)
    assert Folder.get_root().subfolder("beta") is None


def test_rm_job(state: State) -> None:
    """test_state.py::test_rm_job"""
    root = Folder.get_root()
    j1 = state.create_job(command="sleep 1")
    assert root.jobs == [j1]
    state.rm(str(j1.job_id))
    assert root.jobs == []
    with pytest.raises(DoesNotExist):
        state.get_jobs(j1.job_id)
    j2 = state.create_job(command="sleep 1")
    confirm = Mock(return_value=False)
    assert not state.rm(j2, confirm=confirm)
    confirm.assert_called_once()
    assert root.jobs == [j2]
    assert state.rm(j2, confirm=Mock(return_value=True))
    assert root.jobs == []
    alpha = root.add_folder("alpha")
    j3 = state.create_job(command="sleep 1", folder=alpha)
    assert alpha.jobs == [j3]
    state.rm(str(j3.job_id))  # an id is found from any folder
    assert alpha.jobs == []


def test_rm_recursive(state: State, sample_jobs: list[Job]) -> None:
    """test_state.py::test_rm_recursive"""
    root = Folder.get_root()
    for folder in list(root.children):
        confirm = Mock()
        with pytest.raises(CannotRemoveIsFolder):
            state.rm(folder, confirm=confirm)
        assert confirm.call_count == 0
        assert not state.rm(folder, recursive=True, confirm=Mock(return_value=False))
        assert state.rm(folder, recursive=True, confirm=Mock(return_value=True))
    remaining = state.get_jobs("/", recursive=True)
    assert ids(remaining) == ids(sample_jobs[:3])  # only the root's jobs are left


def test_rm_invalid(state: State, kong_home: Path) -> None:
    """test_state.py::test_rm_invalid"""
    state.create_job(command="true")
    before = dump(kong_home)
    with pytest.raises(TypeError):
        state.rm(4.5)  # type: ignore[arg-type]
    assert dump(kong_home) == before


# -- State: create_job, get_jobs ---------------------------------------------------------


def test_create_job(state: State) -> None:
    """test_state.py::test_create_job"""
    root = Folder.get_root()
    j1 = state.create_job(command="sleep 1")
    assert j1.folder == root
    assert root.jobs == [j1]
    f2 = root.add_folder("f2")
    state.cd("f2")
    j2 = state.create_job(command="sleep 1")
    assert j2.folder == f2
    assert f2.jobs == [j2]
    # DIFFERENCE: kong takes folder= (kong-batch refused it with ValueError); a folder
    # that does not exist is still a ValueError.
    with pytest.raises(ValueError) as caught:
        state.create_job(command="a", folder="blub")
    assert isinstance(caught.value, KongError)
    assert state.create_job(command="a", folder="/").folder == root
    with pytest.raises(ValueError):  # the driver comes from the profile
        state.create_job(command="a", driver="blub")


def test_get_jobs(state: State) -> None:
    """test_state.py::test_get_jobs"""
    root = Folder.get_root()
    j1 = state.create_job(command="sleep 1")
    root.add_folder("f2")
    state.cd("f2")
    j2 = state.create_job(command="sleep 1")
    j3 = state.create_job(command="sleep 1")
    assert state.get_jobs(f"{j1.job_id}") == [j1]
    # DIFFERENCE: the folder of `folder/<id>` counts: from /f2, "f2/2" means /f2/f2/2
    # (kong-batch ignored the folder part). "../2" or "/f2/2" name it from here.
    with pytest.raises(ValueError):
        state.get_jobs(f"f2/{j2.job_id}")
    assert state.get_jobs(f"../f2/{j2.job_id}") == [j2]
    assert state.get_jobs(f"/f2/{j2.job_id}") == [j2]
    with pytest.raises(DoesNotExist):  # in the wrong folder
        state.get_jobs(f"../{j2.job_id}")
    with pytest.raises(DoesNotExist):
        state.get_jobs("42")
    assert state.get_jobs("../*") == [j1]
    assert state.get_jobs("*") == [j2, j3]
    state.cwd = root
    assert state.get_jobs(f"f2/{j2.job_id}") == [j2]
    assert state.get_jobs("f2/*") == [j2, j3]
    with pytest.raises(DoesNotExist):
        state.get_jobs(42)
    with pytest.raises(DoesNotExist):
        state.get_jobs("/42")
    assert state.get_jobs(j1) == [j1]
    with pytest.raises(TypeError):
        state.get_jobs(4.2)  # type: ignore[arg-type]
    with pytest.raises(TypeError):  # not a list of the ids 49 and 50
        state.select_jobs(b"12", recursive=False)  # type: ignore[arg-type]
    # DIFFERENCE: an empty JobSpec is refused (kong-batch: the current folder's jobs)
    for empty in ("", "  "):
        with pytest.raises(ValueError, match="empty JobSpec"):
            state.get_jobs(empty)


def test_folder_job_spec_for_every_command(state: State, kong_home: Path) -> None:
    """``folder/<id>`` works for ls, info, mv, submit_job, kill_job and rm (API and CLI)."""
    state.mkdir("/a/b", create_parent=True)
    state.mkdir("/f2")
    j1 = state.create_job(command="sleep 30", folder="/a/b")
    j2 = state.create_job(command="true", folder="/f2")
    assert state.ls(f"/a/b/{j1.job_id}")[1] == [j1]
    assert state.ls(j1.job_id) == ([], [j1])  # any JobSpec, an int id too
    with pytest.raises(TypeError):
        state.ls(4.5)  # type: ignore[arg-type]
    with state.pushd("/a"):
        assert state.ls(f"b/{j1.job_id}")[1] == [j1]
        assert state.submit_job(f"b/{j1.job_id}") == [j1]
        until(lambda: j1.get_status() == Job.Status.RUNNING, what="job 1 running")
        assert state.kill_job(f"b/{j1.job_id}") == [j1]
    with state.pushd("/f2"):
        moved = state.mv(f"../f2/{j2.job_id}", "/a")
        assert list(moved) == [j2]
    assert j2.folder.path == "/a"
    db.dispose()
    info = subprocess.run([*KONG, "info", f"/a/{j2.job_id}"], capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert info.returncode == 0, info.stderr
    assert "true" in info.stdout
    wrong = subprocess.run([*KONG, "info", f"/f2/{j2.job_id}"], capture_output=True,
                           text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert wrong.returncode == 1
    assert wrong.stderr.strip() == f"kong: error: no job {j2.job_id} in /f2"
    gone = subprocess.run([*KONG, "rm", "-y", f"/a/{j2.job_id}"], capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert gone.returncode == 0, gone.stderr
    db.init(state.config.database_url)
    with pytest.raises(DoesNotExist):
        state.get_jobs(j2.job_id)


def test_get_folders_jobs_pattern(state: State) -> None:
    """test_state.py::test_get_folders_jobs_pattern"""
    root = Folder.get_root()
    alpha = [root.add_folder(f"alpha_{n}") for n in range(10)]
    beta = [root.add_folder(f"beta_{n}") for n in range(13)]
    jobs_alpha = [state.create_job(command="sleep 1", folder=f) for f in alpha]
    jobs_beta = [state.create_job(command="sleep 1", folder=f) for f in beta]
    assert state.get_jobs("alpha_*/*") == jobs_alpha
    assert sorted(ids(state.get_jobs("beta_*/*"))) == sorted(ids(jobs_beta))


def test_get_jobs_range(state: State, kong_home: Path) -> None:
    """test_state.py::test_get_jobs_range, and a range that selects nothing."""
    j1, j2, j3, j4, j5 = (state.create_job(command="sleep 1") for _ in range(5))
    assert set(state.get_jobs("2..4")) == {j2, j3, j4}
    assert set(state.get_jobs("1..2")) == {j1, j2}
    assert set(state.get_jobs("2..5")) == {j2, j3, j4, j5}
    with pytest.raises(ValueError):
        state.get_jobs("4..2")
    state.mkdir("/empty")
    before = dump(kong_home)
    assert state.get_jobs("/empty/5..5") == []
    assert state.get_jobs("6..9") == []
    assert state.submit_job("6..9") == []
    assert state.kill_job("/empty/1..5") == []
    assert state.ls("6..9") == ([], [])
    assert dump(kong_home) == before


def test_empty_range_is_an_error_on_the_cli(state: State, kong_home: Path) -> None:
    state.mkdir("/empty")
    db.dispose()
    before = dump(kong_home)
    for argv in (["ls", "5..5"], ["info", "/empty/1..3"], ["submit", "5..5"],
                 ["kill", "-y", "5..5"]):
        proc = subprocess.run([*KONG, *argv], capture_output=True, text=True, timeout=60,
                              stdin=subprocess.DEVNULL)
        assert proc.returncode == 1, (argv, proc.stdout, proc.stderr)
        assert proc.stderr.strip() == f"kong: error: no jobs in range {argv[-1]}"
    # the shell says it too (`kong` reading commands from a script)
    repl = subprocess.run(KONG, input="ls 5..5\n", capture_output=True, text=True, timeout=60)
    assert repl.returncode == 1
    assert repl.stderr.strip() == "kong: error: no jobs in range 5..5"
    assert dump(kong_home) == before


# -- State: submit, kill, resubmit, wait (local driver) -----------------------------------


def test_submit_job(state: State, sample_jobs: list[Job]) -> None:
    """test_state.py::test_submit_job, _non_recursive, _recursive"""
    assert state.submit_job("/f2") == sample_jobs[7:11]  # not the jobs in /f2/beta
    assert all(j.status != Job.Status.CREATED for j in sample_jobs[7:11])
    assert all(j.status == Job.Status.CREATED for j in sample_jobs[11:])
    assert state.submit_job("/f2", recursive=True) == sample_jobs[11:]  # the rest only
    assert ids(state.submit_job(sample_jobs[0].job_id)) == [sample_jobs[0].job_id]
    finish(state, sample_jobs[7:] + sample_jobs[:1])
    assert all(j.get_status() == Job.Status.COMPLETED for j in sample_jobs[7:])


def test_kill_job_makes_jobs_failed(state: State) -> None:
    """test_state.py::test_kill_job: after kill_job returns, the killed jobs read FAILED
    (job.get_status() and ls)."""
    jobs = [state.create_job(command="sleep 30") for _ in range(3)]
    state.submit_job(ids(jobs))
    # the local runner may start them one after the other: kill running and queued ones
    until(lambda: jobs[0].get_status() == Job.Status.RUNNING, what="the first job running")
    assert state.kill_job(f"{jobs[0].job_id}..{jobs[-1].job_id}") == jobs
    assert [j.get_status() for j in jobs] == [Job.Status.FAILED] * 3
    listed = state.ls("/")[1]
    assert [j.status for j in listed] == [Job.Status.FAILED] * 3


def test_job_resubmit_failed_only(state: State) -> None:
    """test_state.py::test_job_resubmit_failed_only"""
    good = state.create_job(command="true")
    bad = state.create_job(command="exit 3")
    state.submit_job([good.job_id, bad.job_id])
    finish(state, [good, bad])
    assert (good.status, bad.status) == (Job.Status.COMPLETED, Job.Status.FAILED)
    assert state.resubmit_job("/", failed_only=True) == [bad]
    finish(state, [bad])
    assert bad.get_status() == Job.Status.FAILED
    assert good.status == Job.Status.COMPLETED


def test_wait_timeout_and_progress(state: State) -> None:
    """test_state.py::test_wait, test_wait_timeout"""
    slow = state.create_job(command="sleep 30")
    state.submit_job(slow)
    with pytest.raises(TimeoutError):
        state.wait([slow], notify=False, timeout=1, poll_interval=0.05)
    state.kill_job(slow)
    quick = state.create_job(command="true")
    state.submit_job(quick)
    steps = state.wait([quick], notify=False, poll_interval=0.05, progress=True)
    assert steps is not None
    assert [j.status for j in list(steps)[-1]] == [Job.Status.COMPLETED]


# -- Folder ----------------------------------------------------------------------------


def test_folder_path_find_and_operators(state: State) -> None:
    """test_folder.py::test_path, test_find_by_path, test_fancy_operator, test_create*"""
    root = Folder.get_root()
    assert root.path == "/"
    f1 = root.add_folder("f1")
    f2 = f1.add_folder("f2")
    f3 = f2.add_folder("f3")
    f4 = f2.add_folder("f4")
    assert f4.path == "/f1/f2/f4"
    assert root / "f1" / "f2" / "f3" == f3
    assert root / "nope" is None
    for path, cwd, expected in [
        ("/", None, root), ("../blubb", None, None), ("/f1/f2/f4", None, f4),
        ("f1", root, f1), ("../", f1, root), ("../f1/f2", f1, f2), ("../f4", f3, f4),
    ]:
        assert Folder.find_by_path(path, cwd) == expected
    for f in (root, f1, f2, f3, f4):
        assert Folder.find_by_path(".", f) == f
        assert Folder.find_by_path(f.path, f) == f
        assert Folder.find_by_path(f.path + "/", f) == f
        assert Folder.find_by_path("nope", f) is None
        # DIFFERENCE: `..` of the root is the root (kong-batch: None).
        assert Folder.find_by_path("..", f) == (f.parent or root)
    for bad in (".", "..", "", "a/b", "123"):
        with pytest.raises(ValueError):  # kong-batch: AssertionError
            root.add_folder(bad)
    with pytest.raises(CannotCreateError):  # kong-batch: peewee.IntegrityError
        root.add_folder("f1")
    assert f1.add_folder("f1").path == "/f1/f1"  # the same name one level down is fine
    state.mv(f4, f1)
    f4.reload()
    assert f4.path == "/f1/f4"


def test_children_and_jobs_follow_changes(state: State) -> None:
    """kong-batch's ``folder.children``/``folder.jobs`` were fresh queries: a script reads
    them again after a change and must see it."""
    root = Folder.get_root()
    assert root.children == [] and root.jobs == []
    a = root.add_folder("a")
    assert root.children == [a]
    b = state.mkdir("b")
    assert root.children == [a, b]
    job = state.create_job(command="true")
    assert root.jobs == [job]
    state.mv(job, a)
    assert (root.jobs, a.jobs) == ([], [job])
    state.mv(b, a)
    assert (root.children, a.children) == ([a], [b])
    state.rm(b, recursive=True)
    assert a.children == []
    state.rm(job)
    assert a.jobs == []


def test_folders_jobs_recursive_and_job_stats(state: State) -> None:
    """test_folder.py::test_folders_recursive, test_jobs_recursive, test_job_stats"""
    root = Folder.get_root()
    f1 = root.add_folder("f1")
    f2 = f1.add_folder("f2")
    f3 = f1.add_folder("f3")
    f4 = root.add_folder("f4")
    assert set(root.folders_recursive()) == {f1, f2, f3, f4}
    j1 = state.create_job(command="true", folder=f1)
    j2 = state.create_job(command="exit 1", folder=f2)
    state.create_job(command="true", folder=f2)
    assert list(root.jobs_recursive())[:2] == [j1, j2]
    state.submit_job([j1.job_id, j2.job_id])
    finish(state, [j1, j2])
    expected = {s: 0 for s in Job.Status}
    expected.update({Job.Status.COMPLETED: 1, Job.Status.FAILED: 1, Job.Status.CREATED: 1})
    assert f1.job_stats() == expected
    assert root.job_stats() == expected


# -- Job and the local driver ------------------------------------------------------------


def test_job_dirs_exist_after_create_and_size_is_the_output(state: State) -> None:
    """test_local_driver.py::test_create_job (dirs exist at once), test_job.py::test_properties;
    ``Job.size()`` is the output dir only (seed: "the size of the job output")."""
    job = state.create_job(command="head -c 1000 input.bin > $KONG_JOB_OUTPUT_DIR/out.bin; "
                                   "seq 1 5000",
                           cwd=None)
    # DIFFERENCE: the dirs are the driver's (job.log_dir, job.output_dir), not data[...]
    assert os.path.isdir(job.log_dir)
    assert os.path.isdir(job.output_dir)
    with open(os.path.join(job.output_dir, "input.bin"), "wb") as fh:  # an input, pre-submit
        fh.write(b"x" * 3000)
    # du's count: the files plus the output dir's own entry (a few KiB), nothing else
    assert 3000 <= job.size() < 3000 + 16384
    measured = job.size()
    job2 = state.create_job(
        command=f"cat {job.output_dir}/input.bin > $KONG_JOB_OUTPUT_DIR/copy; seq 1 5000"
    )
    state.submit_job(job2)
    finish(state, [job2])
    assert job2.status == Job.Status.COMPLETED
    with job2.stdout() as fh:
        assert len(fh.read()) > 20000  # the log is big ...
    assert job2.size() == measured  # ... and not counted: only the output is


def test_run_job_stdout_stderr_exit_codes(state: State) -> None:
    """test_local_driver.py::test_run_job, test_run_stdout_stderr, test_run_failed"""
    ok = state.create_job(command="echo 'ERRORERROR' 1>&2 ; echo 'VALUEVALUE'")
    fail1 = state.create_job(command="exit 1")
    fail127 = state.create_job(command="exit 127")
    assert ok.status == Job.Status.CREATED
    ok.submit()
    assert ok.status == Job.Status.SUBMITTED
    state.submit_job([fail1.job_id, fail127.job_id])
    ok.wait(timeout=30)
    assert ok.status == Job.Status.COMPLETED
    with ok.stdout() as fh:
        assert fh.read().strip() == "VALUEVALUE"
    with ok.stderr() as fh:
        assert fh.read().strip() == "ERRORERROR"
    finish(state, [fail1, fail127])
    assert (fail1.status, fail127.status) == (Job.Status.FAILED, Job.Status.FAILED)
    assert (fail1.data["exit_code"], fail127.data["exit_code"]) == (1, 127)


def test_run_job_timeout_then_completes(state: State) -> None:
    """test_local_driver.py::test_run_job_timeout, test_wait"""
    job = state.create_job(command="sleep 3")
    job.submit()
    with pytest.raises(TimeoutError):
        job.wait(timeout=0)
    assert job.get_status() in (Job.Status.SUBMITTED, Job.Status.RUNNING)
    job.wait(timeout=60)
    assert job.status == Job.Status.COMPLETED


def test_run_kill(state: State) -> None:
    """test_local_driver.py::test_run_kill, test_bulk_kill"""
    jobs = [state.create_job(command="echo begin; sleep 10; echo end") for _ in range(3)]
    state.submit_job(ids(jobs))
    until(lambda: jobs[0].get_status() == Job.Status.RUNNING, what="the first job running")
    jobs[0].kill()
    state.kill_job(ids(jobs[1:]))
    for job in jobs:
        assert job.get_status() == Job.Status.FAILED
        with job.stdout() as fh:
            assert "end" not in fh.read()


def test_module_level_get_instance(kong_home: Path) -> None:
    """test_state.py::test_module_get_instance"""
    state = kong.get_instance()
    assert isinstance(state, kong.state.State)
    assert state.cwd == Folder.get_root()
    assert state.ls() == ([], [])
