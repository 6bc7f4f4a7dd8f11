"""Issue 17: no other user can read, steer or impersonate a user's kong.

Every test here acts as a real second local user (``kong-sec-other``, created with
``useradd``; the tests need root for that and skip, saying so, without it): it
pre-creates the agent's fallback directory, listens where the agent should,
plants configs and runner scripts, and tries to read the user's files with
``su kong-sec-other -c 'cat ...'``. On the sshd test cluster the same is tried
with a second user inside the container.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import secrets
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from kong.remote import agent
from kong.remote.agent_paths import _private_dir
from tests.clusters import Cluster
from tests.kongcmd import KONG

pytestmark = [pytest.mark.timeout(300)]

OTHER = "kong-sec-other"
SECRET = "API_TOKEN=s3cr3t-" + secrets.token_hex(4)


@dataclass
class OtherUser:
    name: str
    uid: int
    gid: int

    def sh(self, command: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """``command`` run by the other user, the way a person would: ``su``."""
        return subprocess.run(["su", "-s", "/bin/sh", self.name, "-c", command],
                              capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL, check=False)

    def readable(self, paths: list[Path]) -> list[str]:
        """Which of ``paths`` the other user can read (files) or list (dirs)."""
        script = "".join(
            f'if [ -d {_q(p)} ]; then ls {_q(p)} >/dev/null 2>&1 && echo {_q(p)}; '
            f'else cat {_q(p)} >/dev/null 2>&1 && echo {_q(p)}; fi\n' for p in paths)
        return self.sh(script).stdout.split()


def _q(path: Path | str) -> str:
    import shlex

    return shlex.quote(str(path))


@pytest.fixture(scope="module")
def other_user() -> Iterator[OtherUser]:
    if os.getuid() != 0:
        pytest.skip("needs root to create a second local user (useradd) and act as it")
    created = False
    try:
        pwd.getpwnam(OTHER)
    except KeyError:
        subprocess.run(["useradd", "-M", "-N", "-s", "/bin/sh", OTHER], check=True)
        created = True
    entry = pwd.getpwnam(OTHER)
    yield OtherUser(OTHER, entry.pw_uid, entry.pw_gid)
    if created:
        subprocess.run(["userdel", OTHER], check=False)


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """A sticky, world-writable dir like /tmp, of this test alone (the real /tmp/kong-0
    belongs to other kong processes of this machine)."""
    path = Path(tempfile.mkdtemp(prefix="kong-sec-", dir="/tmp"))
    os.chmod(path, 0o1777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


# A listener run as the other user: says READY, records every connection's bytes until
# a connection says STOP, then prints what it got as JSON.
LISTENER = textwrap.dedent(r"""
    import json, os, socket, sys
    path, fd = sys.argv[1], int(sys.argv[2])
    if fd >= 0:
        srv = socket.socket(fileno=fd)
    else:
        os.makedirs(os.path.dirname(path), mode=0o777, exist_ok=True)
        os.chmod(os.path.dirname(path), 0o777)
        srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        srv.bind(path)
        os.chmod(path, 0o777)
    srv.listen(16)
    print("READY", flush=True)
    got = []
    while True:
        conn, _ = srv.accept()
        conn.settimeout(3)
        data = b""
        try:
            while True:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                data += chunk
                if data == b"STOP":
                    break
        except OSError:
            pass
        conn.close()
        if data == b"STOP":
            break
        got.append(data.decode("latin-1"))
    print(json.dumps(got), flush=True)
""")


def _system_python() -> str:
    """A Python the other user may run (the test's venv may be closed to it)."""
    for candidate in ("/usr/bin/python3", "/usr/local/bin/python3"):
        if os.access(candidate, os.X_OK):
            return candidate
    pytest.skip("no system python3 for the other user to run")


class Impostor:
    """A fake agent listening at ``path`` as the other user."""

    def __init__(self, user: OtherUser, path: Path, bound: socket.socket | None = None) -> None:
        self.path = path
        fds = (bound.fileno(),) if bound is not None else ()
        self.proc = subprocess.Popen(
            [_system_python(), "-c", LISTENER, str(path), str(bound.fileno() if bound else -1)],
            user=user.uid, group=user.gid, stdout=subprocess.PIPE, text=True,
            pass_fds=fds, cwd="/")
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline().strip() == "READY"

    def received(self) -> list[str]:
        """Everything sent to the impostor (its listening ends here)."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect(str(self.path))
            s.sendall(b"STOP")
        out, _ = self.proc.communicate(timeout=10)
        return list(json.loads(out.strip().splitlines()[-1]))


def kong(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*KONG, *args], env=env, capture_output=True, text=True,
                          timeout=120, stdin=subprocess.DEVNULL, check=False)


def make_home(path: Path, profiles: dict[str, Any] | None = None, **top: Any) -> dict[str, str]:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    data = {"profiles": profiles or {"c": {"driver": "slurm", "host": "127.0.0.1", "port": 1}},
            **top}
    data.setdefault("default_profile", next(iter(data["profiles"])))
    (path / "config.yml").write_text(yaml.safe_dump(data, sort_keys=False))
    os.chmod(path / "config.yml", 0o600)
    env = {**os.environ, "KONG_HOME": str(path)}
    env.pop("KONG_CONFIG_DIR", None)
    return env


@pytest.fixture
def agent_env(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Point this process (and the kong processes it starts) at a KONG_HOME with the
    agent on; stops that agent afterwards."""
    homes: list[Path] = []

    def use(home: Path, env: dict[str, str]) -> dict[str, str]:
        env.pop("KONG_AGENT", None)
        monkeypatch.setenv("KONG_HOME", str(home))
        monkeypatch.delenv("KONG_AGENT", raising=False)
        monkeypatch.delenv("KONG_CONFIG_DIR", raising=False)
        homes.append(home)
        return env

    yield use
    for home in homes:
        os.environ["KONG_HOME"] = str(home)
        with contextlib.suppress(Exception):  # an impostor's socket is no agent to stop
            agent.stop_agent()


# -- impersonating the agent -----------------------------------------------------------


def test_agent_dir_precreated_in_tmp_by_another_user_is_refused(
    other_user: OtherUser, shared_tmp: Path, tmp_path: Path, agent_env: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The socket path is too long, XDG_RUNTIME_DIR is unset: the agent would live in
    $TMPDIR/kong-<uid>/. Another user made that dir first and listens in it."""
    home = tmp_path / ("deep-" + "d" * 90)
    env = agent_env(home, make_home(home))
    env.pop("XDG_RUNTIME_DIR", None)
    env["TMPDIR"] = str(shared_tmp)
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.setenv("TMPDIR", str(shared_tmp))
    monkeypatch.setattr(tempfile, "tempdir", None)
    path = agent.socket_path()
    assert path.parent == shared_tmp / f"kong-{os.getuid()}"
    impostor = Impostor(other_user, path)
    assert path.parent.stat().st_uid == other_user.uid

    out = kong(env, "connect", "c")
    assert out.returncode == 1
    assert out.stderr.startswith("kong: error: ") and len(out.stderr.splitlines()) == 1
    assert f"belongs to uid {other_user.uid}" in out.stderr and "XDG_RUNTIME_DIR" in out.stderr
    assert "Traceback" not in out.stderr
    with pytest.raises(agent.AgentUntrusted, match="impersonating"):
        agent.call({"op": "hello"})
    assert impostor.received() == []  # not a byte, let alone a one-time code


def test_world_writable_kong_home_is_refused_and_a_swapped_agent_dir_too(
    other_user: OtherUser, shared_tmp: Path, agent_env: Any,
) -> None:
    """KONG_HOME is open to everyone: the other user moves agent/ aside and listens in
    an agent/ of its own. kong refuses to start at all; and the agent client, reached
    without the start-up check, refuses the swapped directory."""
    home = shared_tmp / "home"
    env = agent_env(home, make_home(home))
    _private_dir(home / "agent")
    os.chmod(home, 0o777)
    moved = other_user.sh(f"mv {_q(home / 'agent')} {_q(home / 'agent.moved')}")
    assert moved.returncode == 0, moved.stderr
    impostor = Impostor(other_user, home / "agent" / "agent.sock")

    out = kong(env, "connect", "c")
    assert out.returncode == 1
    assert out.stderr == (f"kong: error: refusing to use KONG_HOME {home}: it is writable "
                          f"by other users: run `chmod go-w {home}`\n")
    assert "refusing to use KONG_HOME" in kong(env, "ls").stderr

    with pytest.raises(agent.AgentUntrusted, match=f"belongs to uid {other_user.uid}"):
        agent.call({"op": "hello"}, spawn=False)
    assert impostor.received() == []


def test_agent_dir_of_another_user_is_refused_by_every_agent_command(
    other_user: OtherUser, tmp_path: Path,
) -> None:
    home = tmp_path / "h"
    env = make_home(home)
    env.pop("KONG_AGENT", None)
    (home / "agent").mkdir(mode=0o700)
    os.chown(home / "agent", other_user.uid, other_user.gid)
    for words in (["agent", "status"], ["agent", "start"], ["connect", "c"]):
        out = kong(env, *words)
        assert out.returncode == 1, (words, out.stdout)
        assert out.stderr == (
            f"kong: error: {home / 'agent'} belongs to uid {other_user.uid}, not to you (uid "
            f"{os.getuid()}): another user may be impersonating the kong agent; have it "
            f"removed (as root: `rm -r {home / 'agent'}`)\n"), words
    assert list((home / "agent").iterdir()) == []


def test_a_listener_of_another_uid_in_our_own_dir_is_refused(
    other_user: OtherUser, tmp_path: Path, agent_env: Any,
) -> None:
    """Even in a directory that passes every check, the client asks the kernel who
    listens (SO_PEERCRED) and sends nothing to another uid."""
    home = tmp_path / "h"
    agent_env(home, make_home(home))
    path = agent.socket_path()
    _private_dir(path.parent)
    bound = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    bound.bind(str(path))  # bound by us, listened on by the other user
    os.chmod(path, 0o666)
    impostor = Impostor(other_user, path, bound)
    bound.close()
    with pytest.raises(agent.AgentUntrusted, match=f"runs as uid {other_user.uid}"):
        agent.call({"op": "hello"}, spawn=False)
    # It had to connect to ask; it hung up without sending a byte.
    assert impostor.received() == [""]


# -- planted config and runner ---------------------------------------------------------


def test_config_owned_by_another_user_is_refused(other_user: OtherUser, tmp_path: Path) -> None:
    home = tmp_path / "h"
    env = make_home(home, {"local": {"driver": "local"}})
    os.chown(home / "config.yml", other_user.uid, other_user.gid)
    out = kong(env, "ls")
    assert out.returncode == 1
    assert out.stderr.startswith(f"kong: error: refusing to use the config file "
                                 f"{home / 'config.yml'}: it belongs to uid {other_user.uid}")
    assert len(out.stderr.splitlines()) == 1


def _run_local_job(env: dict[str, str], command: str) -> None:
    out = kong(env, "create-job", "--submit", "--", command)
    assert out.returncode == 0, out.stderr
    out = kong(env, "wait", "1")
    assert out.returncode == 0, out.stdout + out.stderr


def test_planted_local_runner_never_runs(
    other_user: OtherUser, shared_tmp: Path, tmp_path: Path,
) -> None:
    """The jobs dir became writable by others; the other user swaps the local runner for
    its own script. `kong ls -u` (which runs the runner) refuses instead of running it."""
    home = shared_tmp / "h"
    env = make_home(home, {"local": {"driver": "local"}})
    _run_local_job(env, "echo hello")
    [install] = (home / "jobs").iterdir()
    [runner] = install.glob("local_runner-*.py")
    pwned = tmp_path / "pwned"
    os.chmod(home, 0o755)
    os.chmod(home / "jobs", 0o755)
    os.chmod(install, 0o777)
    payload = f"open({str(pwned)!r}, 'w').write('ran')"
    planted = other_user.sh(f"rm -f {_q(runner)} && echo {_q(payload)} > {_q(runner)}")
    assert planted.returncode == 0, planted.stderr
    assert runner.stat().st_uid == other_user.uid

    out = kong(env, "ls", "-u")
    assert out.returncode == 1
    assert out.stderr.startswith("kong: error: refusing to use the local jobs dir")
    assert f"chmod go-w {install}" in out.stderr
    assert not pwned.exists()
    os.chmod(install, 0o700)  # the user follows the advice; the planted file is not theirs
    out = kong(env, "ls", "-u")
    assert out.returncode == 1 and f"{runner} belongs to uid {other_user.uid}" in out.stderr
    assert not pwned.exists()


# -- nothing of a user's kong is readable by another ------------------------------------


def _tree(root: Path) -> list[Path]:
    return [root, *sorted(root.rglob("*"))]


def test_local_files_are_the_users_alone(other_user: OtherUser, shared_tmp: Path) -> None:
    """A local job that writes a secret to stdout, stderr and an output file; then every
    file and dir kong made (database, history, job script, logs, outputs) is 0600/0700
    and the other user can read none of them."""
    home = shared_tmp / "h"  # the other user can walk down to KONG_HOME...
    env = make_home(home, {"local": {"driver": "local"}})
    os.chmod(home, 0o755)  # ...and even into it: what kong makes must still be closed
    _run_local_job(env, f'echo {SECRET}; echo {SECRET} >&2; '
                        f'echo {SECRET} > "$KONG_JOB_OUTPUT_DIR/result.txt"')
    # The REPL's history, written as the REPL writes it.
    out = subprocess.run(
        [sys.executable, "-c", "from kong.repl.shell import history_file; "
         "from prompt_toolkit.history import FileHistory; "
         f"FileHistory(str(history_file())).append_string('export {SECRET}')"],
        env=env, capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    files = _tree(home)
    names = {p.name for p in files}
    assert {"kong.sqlite", "history", "job.sh", "stdout.txt", "stderr.txt",
            "result.txt"} <= names, names
    assert SECRET in next(p for p in files if p.name == "stdout.txt").read_text()
    loose = [f"{p} {stat.filemode(p.stat().st_mode)}" for p in files[1:]
             if stat.S_IMODE(p.stat().st_mode) & 0o077]
    assert loose == []
    # kong closed the data dir it found open; opened again, its contents stay closed.
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    os.chmod(home, 0o755)
    assert other_user.readable([home]) == [str(home)]
    assert other_user.readable(files[1:]) == []
    assert other_user.sh(f"cat {_q(home / 'kong.sqlite')}").returncode != 0


@pytest.mark.cluster
@pytest.mark.parametrize("cluster_name,via_agent", [
    ("sshd_server", False), ("sshd_server", True), ("slurm_cluster", False)])
def test_cluster_files_are_the_users_alone(
    cluster_name: str, via_agent: bool, request: pytest.FixtureRequest, tmp_path: Path,
) -> None:
    """The same on the test clusters (the sshd one with the local driver, in-process and
    through the kong agent; Slurm): job dir, script, logs, outputs, runner and locks
    under remote_dir, tried by a second user of the cluster host."""
    sshd_server: Cluster = request.getfixturevalue(cluster_name)
    remote_dir = f"~/.kong-sec-{secrets.token_hex(4)}"
    profile = {**sshd_server.profile(), "remote_dir": remote_dir}
    if cluster_name == "sshd_server":
        profile["driver"] = "local"
    home = tmp_path / "h"
    env = make_home(home, {"s": profile}, agent=via_agent)
    if via_agent:
        env.pop("KONG_AGENT", None)
    try:
        _run_local_job(env, f'echo {SECRET}; echo {SECRET} >&2; '
                            f'echo {SECRET} > "$KONG_JOB_OUTPUT_DIR/result.txt"')
        if via_agent:
            status = kong(env, "agent", "status")  # the job really went through it
            assert status.returncode == 0 and "not running" not in status.stdout, status
    finally:
        if via_agent:
            kong(env, "agent", "stop")
    code, _ = sshd_server.exec(f"id {OTHER} || useradd -M -N -s /bin/sh {OTHER}")
    assert code == 0
    user = sshd_server.user
    code, listing = sshd_server.exec(
        f"cd ~{user} && find {remote_dir.removeprefix('~/')} -printf '%m %p\\n'")
    assert code == 0, listing
    entries = [line.split(" ", 1) for line in listing.splitlines() if line.strip()]
    names = {Path(p).name for _, p in entries}
    assert {"job.sh", "stdout.txt", "stderr.txt", "result.txt"} <= names, names
    assert [f"{m} {p}" for m, p in entries if int(m, 8) & 0o077] == []
    code, home_dir = sshd_server.exec(f"getent passwd {user} | cut -d: -f6")
    paths = " ".join(_q(f"{home_dir.strip()}/{p}") for _, p in entries)
    code, said = sshd_server.exec(
        f"su -s /bin/sh {OTHER} -c 'for f in {paths}; do cat \"$f\" >/dev/null 2>&1 "
        f"&& echo READ \"$f\"; done; true'")
    assert "READ" not in said, said
    code, said = sshd_server.exec(
        f"su -s /bin/sh {OTHER} -c 'grep -r {SECRET.split('=')[1]} "
        f"{_q(home_dir.strip())} 2>/dev/null; true'")
    assert SECRET.split("=")[1] not in said


def test_umask_option_relaxes_for_group_projects(tmp_path: Path) -> None:
    """`umask: "027"` in a profile: the job's files are group-readable, never more."""
    home = tmp_path / "h"
    env = make_home(home, {"local": {"driver": "local", "umask": "027"}})
    _run_local_job(env, 'echo hi > "$KONG_JOB_OUTPUT_DIR/shared.txt"')
    [shared] = home.rglob("shared.txt")
    assert stat.S_IMODE(shared.stat().st_mode) == 0o640
    bad = make_home(tmp_path / "bad", {"local": {"driver": "local", "umask": "rwx"}})
    out = kong(bad, "ls")
    assert out.returncode == 1 and "umask" in out.stderr and "027" in out.stderr


def test_a_new_data_dir_is_private(tmp_path: Path) -> None:
    """kong makes KONG_HOME itself (and any missing parent) 0700."""
    home = tmp_path / "new" / "kong"
    env = {**os.environ, "KONG_HOME": str(home)}
    out = kong(env, "ls")
    assert out.returncode == 0, out.stderr
    for path in (tmp_path / "new", home):
        assert stat.S_IMODE(path.stat().st_mode) == 0o700, path
