"""The kong agent (issue 11): real agent processes, real kong processes, real sshd and
Slurm containers (tests/clusters.py). Connections are counted on the server side
(``Cluster.ssh_connection_count``/``accepted_logins``), never by asking kong.

The rest of the suite runs with ``KONG_AGENT=0`` (tests/conftest.py); every test
here turns the agent on explicitly, each with its own KONG_HOME and so its own
agent, stopped at the end of the test.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from kong.config import Config, Profile
from kong.errors import ConnectionLost
from kong.remote import agent, agent_client, transport_for
from kong.remote.agent_transport import AgentTransport
from kong.remote.ssh import SSHTransport
from tests.clusters import Cluster, ClusterFactory, needs_container
from tests.kongcmd import KONG, KONG_SHELL
from tests.test_ssh_transport import OTP, OtpServer, start_otp_server

pytestmark = [pytest.mark.timeout(300)]


@dataclass
class Home:
    """A KONG_HOME of its own, with the agent on, for in-test calls and subprocesses."""

    path: Path
    env: dict[str, str]
    profiles: dict[str, Any] = field(default_factory=dict)

    def config(self) -> Config:
        return Config()

    def profile(self, name: str) -> Profile:
        return self.config().profile(name)

    def transport(self, name: str) -> Any:
        return transport_for(self.profile(name), self.config())

    def kong(self, *args: str, timeout: float = 120, **kw: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*KONG, *args], env=self.env, capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL, **kw)

    def python(self, code: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=self.env,
                              capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)


def cluster_profile(cluster: Cluster, **extra: Any) -> dict[str, Any]:
    return {**cluster.profile(), **extra}


@pytest.fixture
def make_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Any]:
    homes: list[Home] = []

    def make(profiles: dict[str, Any], name: str = "h", **top: Any) -> Home:
        path = tmp_path / name
        path.mkdir()
        data = {"profiles": profiles, "default_profile": next(iter(profiles)),
                "agent": True, "agent_idle_timeout": 120, **top}
        (path / "config.yml").write_text(yaml.safe_dump(data, sort_keys=False))
        env = {**os.environ, "KONG_HOME": str(path)}
        env.pop("KONG_AGENT", None)
        env.pop("KONG_CONFIG_DIR", None)
        monkeypatch.setenv("KONG_HOME", str(path))
        monkeypatch.delenv("KONG_AGENT", raising=False)
        monkeypatch.delenv("KONG_CONFIG_DIR", raising=False)
        home = Home(path, env, profiles)
        homes.append(home)
        return home

    yield make
    for home in homes:
        monkeypatch.setenv("KONG_HOME", str(home.path))
        agent.stop_agent()


def agent_pid() -> int | None:
    st = agent.status()
    return None if st is None else int(st["pid"])


def wait_for(predicate: Any, timeout: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def connection_times(cluster: Cluster) -> list[float]:
    """When sshd accepted each TCP connection (docker's timestamps of its log lines)."""
    from datetime import datetime

    raw = bytes(cluster._container().logs(timestamps=True)).decode(errors="replace")
    times = []
    for line in raw.splitlines():
        stamp, _, text = line.partition(" ")
        if text.startswith("Connection from "):
            # RFC 3339 with nanoseconds: keep microseconds for fromisoformat.
            day, _, frac = stamp.rstrip("Z").partition(".")
            times.append(datetime.fromisoformat(f"{day}.{frac[:6]}+00:00").timestamp())
    return times


class PeakSampler:
    """Samples the server's connection count in a thread until stopped; keeps the peak."""

    def __init__(self, cluster: Cluster, base: int, every: float = 0.2) -> None:
        self.cluster, self.base, self.every = cluster, base, every
        self.peak = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            # A docker exec now and then answers nothing: skip that sample.
            with contextlib.suppress(Exception):
                self.peak = max(self.peak, self.cluster.ssh_connection_count() - self.base)
                self.samples += 1
            time.sleep(self.every)

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def quiet_server(cluster: Cluster, timeout: float = 20.0) -> int:
    """Close this process's in-process connections to the cluster and wait until the
    server has only what other processes hold (the baseline to count from)."""
    from kong.remote.ssh import default_pool

    default_pool().close_connections()
    deadline = time.monotonic() + timeout
    count = cluster.ssh_connection_count()
    while count and time.monotonic() < deadline:
        time.sleep(0.2)
        count = cluster.ssh_connection_count()
    return count


# -- the agent itself (no cluster needed) --------------------------------------------


def test_start_status_stop_and_private_socket(make_home: Any) -> None:
    home = make_home({"c": {"driver": "slurm", "host": "127.0.0.1", "port": 1}})
    out = home.kong("agent", "status")
    assert out.returncode == 0 and "not running" in out.stdout
    out = home.kong("agent", "start")
    assert out.returncode == 0, out.stderr
    assert "started" in out.stdout
    pid = agent_pid()
    assert pid is not None
    path = agent.socket_path()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(agent.agent_dir()).st_mode) == 0o700
    # Its pid, lock and log files are the user's alone too.
    files = {p.name: stat.S_IMODE(p.stat().st_mode) for p in agent.agent_dir().iterdir()}
    assert {"agent.pid", "agent.lock", "agent.log"} <= set(files), files
    assert all(mode & 0o077 == 0 for mode in files.values()), files
    # Started again: the same agent answers.
    assert "already running" in home.kong("agent", "start").stdout
    assert agent_pid() == pid
    # Nothing of the agent's listens on TCP.
    listening = subprocess.run(["ss", "-Htlnp"], capture_output=True, text=True).stdout
    assert f"pid={pid}," not in listening
    out = home.kong("agent", "status")
    assert out.returncode == 0 and f"pid {pid}" in out.stdout and "no hosts yet" in out.stdout
    out = home.kong("agent", "stop")
    assert out.returncode == 0 and f"stopped (pid {pid})" in out.stdout
    assert agent_pid() is None
    assert not path.exists()
    assert "not running" in home.kong("agent", "stop").stdout


def test_idle_agent_stops_itself(make_home: Any) -> None:
    home = make_home({"c": {"driver": "slurm", "host": "127.0.0.1", "port": 1}},
                     agent_idle_timeout=1)
    out = home.kong("agent", "start")
    assert out.returncode == 0, out.stderr
    # Its pid from what `start` printed: on a loaded machine a 1 s idle timeout may be
    # over before this test could ask the agent itself.
    match = re.search(r"started \(pid (\d+),", out.stdout)
    assert match, out.stdout
    pid = int(match.group(1))
    wait_for(lambda: agent_pid() is None, 10, "the idle agent to stop")
    log = (agent.agent_dir() / "agent.log").read_text()
    assert f"kong agent {pid} listening" in log and "idle for 1 s" in log


def test_many_processes_starting_at_once_make_one_agent(make_home: Any) -> None:
    make_home({"c": {"driver": "slurm", "host": "127.0.0.1", "port": 1}})
    with ThreadPoolExecutor(8) as ex:
        frames = list(ex.map(lambda _: agent.call({"op": "hello"}), range(8)))
    assert len({f["pid"] for f in frames}) == 1


def test_agent_of_another_protocol_version_is_replaced(
    make_home: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_home({"c": {"driver": "slurm", "host": "127.0.0.1", "port": 1}})
    old = agent.call({"op": "hello"})["pid"]
    # This client speaks another version: the agent it finds is stopped and a new
    # one started (which, being this same code on disk, still disagrees: one error).
    ours = agent.PROTOCOL
    monkeypatch.setattr(agent_client, "PROTOCOL", ours + 1)
    with pytest.raises(agent.AgentUnavailable, match="protocol"):
        agent.call({"op": "hello"})
    monkeypatch.setattr(agent_client, "PROTOCOL", ours)
    new = agent_pid()
    assert new is not None and new != old


def test_socket_refuses_another_uid(make_home: Any) -> None:
    """A second user (nobody, uid 65534) cannot use the agent: the directory keeps it
    out, and if the directory were opened up, SO_PEERCRED still refuses it."""
    if os.getuid() != 0:
        pytest.skip("needs root to act as a second user")
    make_home({"c": {"driver": "slurm", "host": "127.0.0.1", "port": 1}})
    assert agent.call({"op": "hello"})["pid"]
    path = agent.socket_path()

    def as_nobody(path: Path) -> str:
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: another user, then one request
            result = "?"
            try:
                os.setgid(65534)
                os.setuid(65534)
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    s.connect(str(path))
                    # Refused before its request is read, the write may meet a closed
                    # socket; the refusal is still there to read.
                    with contextlib.suppress(BrokenPipeError):
                        agent.send_frame(s, {"v": agent.PROTOCOL, "op": "status"})
                    frame = agent.recv_frame(s)
                    result = f"answered {json.dumps(frame)}"
                except OSError as exc:
                    result = f"oserror {exc.errno}"
            except BaseException as exc:  # anything: report, never return into pytest
                result = f"child failed {exc!r}"
            os.write(write_end, result.encode())
            os._exit(0)
        os.close(write_end)
        with os.fdopen(read_end, "rb") as fh:
            said = fh.read().decode()
        os.waitpid(pid, 0)
        return said

    said = as_nobody(path)
    assert said == f"oserror {errno.EACCES}", said  # kept out by the 0700 directory
    # A misconfiguration opens the socket to everyone (here: a link to it in an open
    # directory, mode 0666): the agent itself still refuses the other uid.
    open_dir = Path(tempfile.mkdtemp())
    try:
        os.chmod(open_dir, 0o755)
        os.link(path, open_dir / "s")
        os.chmod(path, 0o666)
        said = as_nobody(open_dir / "s")
    finally:
        shutil.rmtree(open_dir)
    assert said.startswith("answered"), said
    assert '"kind": "refused"' in said and '"hosts"' not in said
    assert agent.status() is not None and agent.status()["refused"] == 1  # type: ignore[index]
    assert "refused a client of uid 65534" in (agent.agent_dir() / "agent.log").read_text()


def test_agent_off_falls_back_in_process_and_says_so_once(
    make_home: Any, caplog: pytest.LogCaptureFixture
) -> None:
    import kong.remote.agent_transport as at

    home = make_home({"c": {"driver": "slurm", "host": "127.0.0.1", "port": 1}}, agent=False)
    at._warned = False
    with caplog.at_level(logging.INFO, logger="kong.remote.agent_transport"):
        t1 = home.transport("c")
        t2 = home.transport("c")
    assert isinstance(t1, SSHTransport) and not isinstance(t1, AgentTransport)
    assert t1 is t2
    said = [r.getMessage() for r in caplog.records if "in-process" in r.getMessage()]
    assert len(said) == 1 and "agent: false" in said[0]
    assert agent_pid() is None
    out = home.kong("connect", "c")
    assert out.returncode == 1 and "agent is off" in out.stderr


def test_no_unix_sockets_falls_back(
    make_home: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import kong.remote.agent_transport as at

    home = make_home({"c": {"driver": "slurm", "host": "127.0.0.1", "port": 1}})
    monkeypatch.setattr(agent, "available", lambda: "this platform has no Unix domain sockets")
    at._warned = False
    with caplog.at_level(logging.WARNING, logger="kong.remote.agent_transport"):
        t = home.transport("c")
    assert not isinstance(t, AgentTransport)
    assert any("no Unix domain sockets" in r.getMessage() for r in caplog.records)


# -- against a real sshd -------------------------------------------------------------


@pytest.mark.cluster
def test_commands_through_the_agent(sshd_server: Cluster, make_home: Any) -> None:
    home = make_home({"s": cluster_profile(sshd_server, driver="local")})
    t = home.transport("s")
    assert isinstance(t, AgentTransport)
    r = t.run(["sh", "-c", 'printf "%s|" "$@"; cat; echo err >&2; exit 3', "sh", "a b", "$x;`"],
              stdin=b"in\x00put")
    assert (r.exit_code, r.stdout, r.stderr) == (3, b"a b|$x;`|in\x00put", b"err\n")
    d = t.run_checked(["mktemp", "-d"]).text().strip()
    t.upload({f"{d}/x/one": b"1" * 100, f"{d}/two": b"\xff\x00"})
    assert t.sizes([f"{d}/x/one", f"{d}/two", f"{d}/none"]) == {
        f"{d}/x/one": 100, f"{d}/two": 2, f"{d}/none": None}
    assert t.read_range(f"{d}/x/one", 90, 5) == b"11111"
    assert t.home().startswith("/")
    t.remove_trees([d])
    assert t.sizes([f"{d}/two"]) == {f"{d}/two": None}
    # A stream follows a growing file through the agent.
    t.run_checked(["sh", "-c", f"printf abc > {d}.log"])
    it = t.stream(f"{d}.log", 1, poll_interval=0.1)
    assert next(it) == b"bc"
    t.run_checked(["sh", "-c", f"printf def >> {d}.log"])
    assert next(it) == b"def"
    it.close()  # type: ignore[attr-defined]
    st = agent.status()
    assert st is not None
    [row] = st["hosts"]
    assert row["host"] == t.label and row["connections"] == 1
    assert row["connections_opened"] == 1 and row["commands"] >= 9
    assert row["bytes_received"] > 0 and row["bytes_sent"] > 0
    wait_for(lambda: agent.status()["hosts"][0]["channels_in_use"] == 0,  # type: ignore[index]
             10, "the stream's channel to close")
    out = home.kong("agent", "status")
    assert t.label in out.stdout and "connections" in out.stdout
    assert "aes128-gcm" in out.stdout  # the negotiated cipher, per host


@pytest.mark.cluster
def test_budget_and_interval_hold_across_processes(sshd_server: Cluster, make_home: Any) -> None:
    needs_container(sshd_server)
    home = make_home({"s": cluster_profile(sshd_server, driver="local", max_connections=2,
                                           connect_interval=1.5)})
    base_logins = sshd_server.accepted_logins()
    base = quiet_server(sshd_server)
    code = """
        import sys
        from concurrent.futures import ThreadPoolExecutor
        from kong.config import Config
        from kong.remote import transport_for
        cfg = Config()
        t = transport_for(cfg.profile("s"), cfg)
        with ThreadPoolExecutor(15) as ex:
            outs = list(ex.map(lambda i: t.run(["sh", "-c", "sleep 0.4; echo $0", str(i)]).text(),
                               range(45)))
        assert outs == [f"{i}\\n" for i in range(45)], outs
        # Through the agent a kong process never loads asyncssh (start-up time).
        assert "asyncssh" not in sys.modules
        print("ok")
    """
    started = time.monotonic()
    with PeakSampler(sshd_server, base, every=0.1) as sampler:
        procs = [subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], env=home.env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(4)]
        results = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), results
    assert sampler.samples >= 5 and sampler.peak <= 2, (sampler.samples, sampler.peak)
    assert sshd_server.accepted_logins() - base_logins == 2
    # The two connections, by sshd's clock, opened at least connect_interval apart.
    # That clock is when each forked sshd child logged "Connection from": on a loaded
    # machine the fork and docker's read of the line lag the accept by a few tenths.
    first, second = connection_times(sshd_server)[-2:]
    assert second - first >= 1.5 - 0.3, (first, second)
    st = agent.status()
    assert st is not None
    [row] = st["hosts"]
    assert (row["connections_opened"], row["commands"]) == (2, 4 * 45)
    assert time.monotonic() - started < 60


@pytest.mark.cluster
def test_client_killed_mid_command_does_not_wedge_the_agent(
    sshd_server: Cluster, make_home: Any
) -> None:
    home = make_home({"s": cluster_profile(sshd_server, driver="local", max_connections=1)})
    t = home.transport("s")
    d = t.run_checked(["mktemp", "-d"]).text().strip()
    code = f"""
        from kong.config import Config
        from kong.remote import transport_for
        cfg = Config()
        t = transport_for(cfg.profile("s"), cfg)
        print("started", flush=True)
        t.run(["sh", "-c", "sleep 3; touch {d}/done"])
    """
    procs = [subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], env=home.env,
                              stdout=subprocess.PIPE, text=True) for _ in range(12)]
    for p in procs:
        assert p.stdout is not None
        assert p.stdout.readline() == "started\n"
    time.sleep(1.0)
    for p in procs:
        p.kill()
        p.wait()
    # The agent serves others at once (12 busy channels: 2 wait for the first ten).
    assert t.run(["echo", "alive"]).stdout == b"alive\n"
    # The killed clients' commands ran to their end (a submit is never half done).
    wait_for(lambda: t.run(["test", "-e", f"{d}/done"]).exit_code == 0, 20, "the commands")
    wait_for(lambda: agent.status()["hosts"][0]["channels_in_use"] == 0,  # type: ignore[index]
             20, "every channel to be released")
    st = agent.status()
    assert st is not None and st["hosts"][0]["connections_opened"] == 1


@pytest.mark.cluster
def test_dead_agent_restarted_by_next_client(sshd_server: Cluster, make_home: Any) -> None:
    home = make_home({"s": cluster_profile(sshd_server, driver="local")})
    assert home.kong("profile", "test", "s", "-c", "1").returncode == 0
    pid = agent_pid()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: agent_pid() is None, 10, "the agent to die")
    # The stale socket file is still there; the next client starts a new agent.
    out = home.kong("profile", "test", "s", "-c", "1")
    assert out.returncode == 0, out.stderr
    new = agent_pid()
    assert new is not None and new != pid


@pytest.mark.cluster
def test_cut_off_command_is_connection_lost_as_in_process(
    sshd_server: Cluster, make_home: Any
) -> None:
    needs_container(sshd_server)
    home = make_home({"s": cluster_profile(sshd_server, driver="local")})
    t = home.transport("s")
    t.run_checked(["true"])
    errors: list[BaseException] = []

    def long() -> None:
        try:
            t.run(["sleep", "20"])
        except BaseException as exc:
            errors.append(exc)

    th = threading.Thread(target=long)
    th.start()
    time.sleep(1.0)
    sshd_server.kill_ssh_connections()
    th.join(30)
    assert len(errors) == 1 and isinstance(errors[0], ConnectionLost), errors
    assert "may or may not have taken effect" in str(errors[0])
    # The next command reconnects.
    assert t.run(["echo", "back"]).stdout == b"back\n"


@pytest.mark.cluster
def test_agent_killed_mid_command_is_connection_lost(sshd_server: Cluster, make_home: Any) -> None:
    home = make_home({"s": cluster_profile(sshd_server, driver="local")})
    t = home.transport("s")
    t.run_checked(["true"])
    pid = agent_pid()
    assert pid is not None
    errors: list[BaseException] = []

    def long() -> None:
        try:
            t.run(["sleep", "20"])
        except BaseException as exc:
            errors.append(exc)

    th = threading.Thread(target=long)
    th.start()
    time.sleep(1.0)
    os.kill(pid, signal.SIGKILL)
    th.join(30)
    assert len(errors) == 1 and isinstance(errors[0], ConnectionLost), errors
    assert t.run(["echo", "back"]).stdout == b"back\n"
    assert agent_pid() not in (None, pid)


# -- one-time codes: asked once, in the terminal that needs it --------------------------


class Tmux:
    """Terminals for kong processes: a tmux server on a socket of this test's own (the
    default tmux server belongs to other people and is never touched)."""

    def __init__(self, env: dict[str, str]) -> None:
        if shutil.which("tmux") is None:
            pytest.skip("tmux is not installed")
        self.socket = f"kong-agent-test-{os.getpid()}-{time.monotonic_ns()}"
        self.env = {**env, "PS1": "$ ", "TERM": "xterm"}
        self._tmux("new-session", "-d", "-s", "t", "-n", "w0", "-x", "160", "-y", "50",
                   "bash --norc --noprofile")

    def _tmux(self, *args: str) -> str:
        out = subprocess.run(["tmux", "-L", self.socket, *args], env=self.env,
                             capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        return out.stdout

    def window(self, name: str) -> None:
        self._tmux("new-window", "-d", "-t", "t", "-n", name, "bash --norc --noprofile")

    def send(self, window: str, text: str) -> None:
        self._tmux("send-keys", "-t", f"t:{window}", "-l", text)
        self._tmux("send-keys", "-t", f"t:{window}", "Enter")

    def screen(self, window: str) -> str:
        return self._tmux("capture-pane", "-p", "-J", "-S", "-", "-t", f"t:{window}")

    def wait(self, window: str, pattern: str, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            screen = self.screen(window)
            if re.search(pattern, screen, re.MULTILINE):
                return screen
            time.sleep(0.1)
        raise AssertionError(f"no {pattern!r} in window {window}:\n{self.screen(window)}")

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], env=self.env,
                       capture_output=True, timeout=30)


@pytest.fixture
def tmux_factory() -> Iterator[Any]:
    made: list[Tmux] = []

    def make(env: dict[str, str]) -> Tmux:
        made.append(Tmux(env))
        return made[-1]

    yield make
    for t in made:
        t.close()


@pytest.fixture(scope="module")
def otp_server(
    cluster_factory: ClusterFactory, tmp_path_factory: pytest.TempPathFactory
) -> OtpServer:
    """The one-time-code sshd of tests/test_ssh_transport.py, in a container of its
    own: counting its connections must not see that module's."""
    return start_otp_server(
        cluster_factory, "sshd-otp-agent", tmp_path_factory.mktemp("otp-agent")
    )


def kill_otp_connections(srv: OtpServer) -> None:
    """Cut every connection to the one-time-code sshd, as a network failure would."""
    srv.kill_ssh_connections()
    # The unprivileged session process outlives its killed monitor and holds the socket.
    code, out = srv.cluster.exec(["sh", "-c", "pkill -KILL -u kong -x sshd; true"])
    assert code == 0, out


#: what terminal_prompt shows for pam_exec's question
PROMPT_LINE = r"^(Password|Response|Verification code|One-time code)[^\n]*: *$"


def prompts_answered() -> int:
    return len(re.findall(r"prompt answered by the client",
                          (agent.agent_dir() / "agent.log").read_text()))


@pytest.mark.cluster
def test_one_time_code_asked_once_for_all_processes(
    otp_server: OtpServer, make_home: Any, tmux_factory: Any
) -> None:
    c = otp_server.cluster
    needs_container(c)
    home = make_home({"otp": {
        "driver": "local", "host": c.host, "port": otp_server.port, "user": c.user,
        "identity_file": str(c.identity_file), "known_hosts": str(otp_server.known_hosts),
    }})
    script = """
        from kong.config import Config
        from kong.remote import transport_for
        cfg = Config()
        print(transport_for(cfg.profile("otp"), cfg).run(["echo", "from-script"]).text(), end="")
    """

    def established() -> int:
        query = f"ss -Htn state established '( sport = :{otp_server.port} )' | wc -l"
        code, out = c.exec(["sh", "-c", query])
        assert code == 0, out
        return int(out.strip())

    # A process without a terminal, nothing connected yet: it fails at once, one line.
    started = time.monotonic()
    out = home.kong("profile", "test", "otp", "-c", "1")
    assert time.monotonic() - started < 10
    assert out.returncode == 1
    [line] = out.stderr.strip().splitlines()
    assert "no terminal" in line and "`kong connect otp`" in line, line

    # The person runs `kong connect otp` in a terminal and is asked for the code once.
    term = tmux_factory(home.env)
    term.window("w1")
    term.send("w0", f"{KONG_SHELL} connect otp; echo EXIT=$?")
    term.wait("w0", PROMPT_LINE)
    term.send("w0", OTP)
    screen = term.wait("w0", r"^EXIT=\d+")
    assert "EXIT=0" in screen and "connected to" in screen and "opened" in screen, screen
    assert prompts_answered() == 1

    # A second process, in another terminal, and a third without one: nobody is asked.
    term.send("w1", f"{KONG_SHELL} profile test otp -c 2; echo EXIT=$?")
    screen = term.wait("w1", r"^EXIT=\d+", 60)
    assert "EXIT=0" in screen and "ok via" in screen, screen
    assert not re.search(PROMPT_LINE, screen, re.MULTILINE), screen
    out = home.python(script)
    assert out.returncode == 0 and out.stdout == "from-script\n", out.stderr
    assert prompts_answered() == 1
    st = agent.status()
    assert st is not None and st["hosts"][0]["connections_opened"] == 1
    assert established() == 1

    # The connection is killed on the server: a process without a terminal now fails
    # at once with the one line...
    kill_otp_connections(otp_server)
    wait_for(lambda: established() == 0, 10, "the connection to drop")
    wait_for(lambda: agent.status()["hosts"][0]["connections"] == 0,  # type: ignore[index]
             10, "the agent to see the connection drop")
    started = time.monotonic()
    out = home.python(script)
    assert time.monotonic() - started < 10
    assert out.returncode == 1
    assert "`kong connect otp`" in out.stderr and "Traceback" in out.stderr  # a script: raises
    out = home.kong("ls", "--refresh")  # nothing remote to refresh: no connection wanted
    assert out.returncode == 0, out.stderr
    # ...and the next command in a terminal asks again, in that terminal.
    term.send("w1", f"{KONG_SHELL} profile test otp -c 1; echo EXIT2=$?")
    term.wait("w1", r"EXIT=0[\s\S]*" + PROMPT_LINE[1:])
    term.send("w1", OTP)
    screen = term.wait("w1", r"^EXIT2=\d+")
    assert "EXIT2=0" in screen, screen
    assert prompts_answered() == 2
    assert "EXIT=0" in term.screen("w0") and len(re.findall(
        PROMPT_LINE, term.screen("w0"), re.MULTILINE)) == 1  # the first terminal: once only
    out = home.python(script)
    assert out.returncode == 0 and out.stdout == "from-script\n", out.stderr
    assert prompts_answered() == 2
    st = agent.status()
    assert st is not None and st["hosts"][0]["connections_opened"] == 2
    assert established() == 1

    # `kong disconnect` closes the connection on purpose.
    out = home.kong("disconnect", "otp")
    assert out.returncode == 0 and "closed 1 connection" in out.stdout, out
    wait_for(lambda: established() == 0, 10, "the server to see the disconnect")


# -- a REPL, a `kong wait` and a script at once, within the budget ------------------------

SCRIPT = """
    import sys, time
    import kong
    duration = float(sys.argv[1])
    state = kong.get_instance(profile="slurm")
    state.mkdir("/s", exist_ok=True, create_parent=True)
    end = time.monotonic() + duration
    submitted, read = [], 0
    i = 0
    while time.monotonic() < end:
        job = state.create_job(command=f"echo script-{i}", folder="/s")
        state.submit_job(job)
        submitted.append(job)
        state.refresh_jobs(submitted)
        for j in submitted:
            if j.status.name == "COMPLETED" and not getattr(j, "_checked", False):
                with j.stdout() as fh:
                    text = fh.read()
                assert text.strip() == f"script-{submitted.index(j)}", text
                j._checked = True
                read += 1
        i += 1
        time.sleep(0.5)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and any(not j.status.finished for j in submitted):
        time.sleep(1)
        state.refresh_jobs(submitted)
    assert all(j.status.name == "COMPLETED" for j in submitted), [j.status for j in submitted]
    print(f"script: {len(submitted)} submitted, {read} logs read")
"""


@pytest.mark.cluster
@pytest.mark.slow
def test_repl_wait_and_script_share_one_budget(
    slurm_cluster: Cluster, make_home: Any, tmux_factory: Any
) -> None:
    needs_container(slurm_cluster)
    duration = 20.0
    home = make_home({"slurm": {**slurm_cluster.profile(), "poll_interval": 1}})
    base_logins = slurm_cluster.accepted_logins()
    base = quiet_server(slurm_cluster)
    sampler = PeakSampler(slurm_cluster, base)
    with sampler:
        # Jobs for `kong wait`, submitted from the command line.
        assert home.kong("mkdir", "-p", "/w", "/r").returncode == 0
        for i in range(3):
            out = home.kong("create-job", "-f", "/w", "--submit", "--", f"sleep {12 + i}")
            assert out.returncode == 0, out.stderr
        waiter = subprocess.Popen([*KONG, "wait", "-r", "/w", "-i", "1", "-q"], env=home.env,
                                  stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        script = subprocess.Popen([sys.executable, "-c", textwrap.dedent(SCRIPT),
                                   str(duration)], env=home.env, stdin=subprocess.DEVNULL,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        # The REPL, in a terminal, for as long: submits, refreshes and log reads.
        term = tmux_factory(home.env)
        # Every line kept: the prompts are counted (a new window takes the limit).
        term._tmux("set-option", "-g", "history-limit", "100000")
        term.window("repl")
        term.send("repl", f"{KONG_SHELL}; echo REPL-EXIT=$?")
        prompt = r"^kong \[slurm\] \S+ >"
        term.wait("repl", prompt)
        sent = 0

        def command(line: str) -> str:
            nonlocal sent
            sent += 1
            term.send("repl", line)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                screen = term.screen("repl")
                if len(re.findall(prompt, screen, re.MULTILINE)) > sent:
                    return screen
                time.sleep(0.1)
            log = (agent.agent_dir() / "agent.log").read_text()[-3000:]
            raise AssertionError(f"the REPL did not finish {line!r}:\n{screen[-3000:]}\n"
                                 f"agent: {agent.status()}\n{log}")

        end = time.monotonic() + duration
        ids: list[int] = []
        i = 0
        while time.monotonic() < end:
            screen = command(f"create-job -f /r --submit -- echo repl-{i}")
            ids.append(int(re.findall(r"created job (\d+) \(submitted\)", screen)[-1]))
            command("ls -u /r")
            if len(ids) > 2:
                command(f"tail {ids[-3]}")
            i += 1
        command("update -r /r")
        term.send("repl", "exit")
        screen = term.wait("repl", r"^REPL-EXIT=\d+")
        waited = waiter.communicate(timeout=120)
        scripted = script.communicate(timeout=180)
    peak = sampler.peak
    assert sampler.samples >= 50, sampler.samples
    assert "REPL-EXIT=0" in screen
    assert "error" not in screen.lower() and "Traceback" not in screen, screen
    assert len(ids) >= 3 and "repl-0" in screen
    assert waiter.returncode == 0, waited
    assert "done: 3 completed" in waited[0], waited
    assert script.returncode == 0, scripted
    assert "submitted" in scripted[0]
    # The server saw no more connections than the budget, and no more logins either.
    assert 1 <= peak <= agent.DEFAULT_MAX_CONNECTIONS, peak
    logins = slurm_cluster.accepted_logins() - base_logins
    assert 1 <= logins <= agent.DEFAULT_MAX_CONNECTIONS, logins
    st = agent.status()
    assert st is not None
    [row] = st["hosts"]
    assert row["connections_opened"] == logins
    print(f"REPL {len(ids)} submits, {scripted[0].strip()}, wait: {waited[0].strip()}; "
          f"server: peak {peak} connection(s), {logins} login(s); agent: {row}")
