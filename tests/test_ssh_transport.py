"""The SSH transport against a real sshd.

``HostSshd`` below is a stop-gap: a real OpenSSH server started on this machine
on a free loopback port with its own keys and config. It has the shape of the
container fixture ``sshd_server`` of ``tests/clusters.py`` (host, port, user,
identity_file, known_hosts, exec, kill_ssh_connections, ssh_connection_count)
so the tests can move to the containers unchanged.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from kong.errors import ConnectionLost, HostKeyError, TransportError
from kong.remote.pool import SSHPool
from kong.remote.ssh import MAX_COMMAND_BYTES, SSHTransport, command_line, ssh_transport

SSHD = "/usr/sbin/sshd"

pytestmark = pytest.mark.skipif(
    not (os.path.exists(SSHD) and shutil.which("ssh-keygen")), reason="needs openssh-server"
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _descendants(pid: int) -> list[int]:
    out: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return out
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children") as fh:
                kids = [int(c) for c in fh.read().split()]
        except FileNotFoundError:
            continue
        for kid in kids:
            out.append(kid)
            out.extend(_descendants(kid))
    return out


@dataclass
class HostSshd:
    """An sshd on this machine (not in a container), started and stopped by the tests."""

    host: str
    port: int
    user: str
    identity_file: str
    known_hosts: str
    workdir: Path
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path = field(default_factory=Path)

    @classmethod
    def start(cls, workdir: Path, max_sessions: int = 10) -> HostSshd:
        workdir.mkdir(parents=True, exist_ok=True)
        hostkey, ident = workdir / "hostkey", workdir / "id_ed25519"
        for key in (hostkey, ident):
            subprocess.run(
                ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True
            )
        (workdir / "authorized_keys").write_text(ident.with_suffix(".pub").read_text())
        port = _free_port()
        pub = " ".join(hostkey.with_suffix(".pub").read_text().split()[:2])
        (workdir / "known_hosts").write_text(f"[127.0.0.1]:{port} {pub}\n")
        config = workdir / "sshd_config"
        config.write_text(
            f"HostKey {hostkey}\n"
            f"AuthorizedKeysFile {workdir}/authorized_keys\n"
            "StrictModes no\nUsePAM no\nPasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\nPidFile none\nAllowTcpForwarding yes\n"
        )
        if os.geteuid() == 0:
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        srv = cls(
            host="127.0.0.1",
            port=port,
            user=getpass.getuser(),
            identity_file=str(ident),
            known_hosts=str(workdir / "known_hosts"),
            workdir=workdir,
            log_path=workdir / "sshd.log",
        )
        log = open(srv.log_path, "wb")  # noqa: SIM115 - handed to the child for its lifetime
        srv.proc = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(config), "-p", str(port),
             "-o", "ListenAddress=127.0.0.1", "-o", f"MaxSessions={max_sessions}",
             "-o", "MaxStartups=100"],
            stdout=log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 10
        while b"Server listening" not in srv.log_path.read_bytes():
            if srv.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"sshd did not start: {srv.log_path.read_text()}")
            time.sleep(0.05)
        return srv

    def stop(self) -> None:
        if self.proc is not None:
            self.kill_ssh_connections()
            self.proc.terminate()
            self.proc.wait(10)

    def exec(self, cmd: str) -> str:
        return subprocess.run(
            ["sh", "-c", cmd], check=True, capture_output=True, text=True
        ).stdout

    def kill_ssh_connections(self) -> None:
        """Kill every per-connection sshd process (and what runs under it), like a reboot would."""
        assert self.proc is not None
        for pid in _descendants(self.proc.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def ssh_connection_count(self) -> int:
        assert self.proc is not None
        with open(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children") as fh:
            return len(fh.read().split())

    def accepted_logins(self) -> int:
        return self.log_path.read_bytes().count(b"Accepted publickey")


@pytest.fixture(scope="session")
def host_sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostSshd]:
    srv = HostSshd.start(tmp_path_factory.mktemp("sshd"))
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def host_sshd_jump(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostSshd]:
    srv = HostSshd.start(tmp_path_factory.mktemp("sshd-jump"))
    yield srv
    srv.stop()


@pytest.fixture
def pool() -> Iterator[SSHPool]:
    p = SSHPool()
    yield p
    p.shutdown()


def transport_for(srv: HostSshd, pool: SSHPool, **kw: object) -> SSHTransport:
    return ssh_transport(
        srv.host,
        port=srv.port,
        user=srv.user,
        identity_file=srv.identity_file,
        known_hosts=srv.known_hosts,
        config=[os.devnull],
        pool=pool,
        **kw,
    )


# -- basics ---------------------------------------------------------------------


def test_run_stdin_and_exit_codes(host_sshd: HostSshd, pool: SSHPool) -> None:
    t = transport_for(host_sshd, pool)
    r = t.run(["sh", "-c", "cat; echo err >&2; exit 3"], stdin=b"hello")
    assert (r.exit_code, r.stdout, r.stderr) == (3, b"hello", b"err\n")
    assert t.run(["true"]).ok
    assert t.stats.round_trips == 2
    assert t.stats.connections_opened == 1
    assert t.stats.bytes_received >= len(b"hello")


def test_same_settings_share_one_transport(host_sshd: HostSshd, pool: SSHPool) -> None:
    assert transport_for(host_sshd, pool) is transport_for(host_sshd, pool)


def test_command_line_limit() -> None:
    assert command_line(["echo", "a b"]) == "echo 'a b'"
    with pytest.raises(TransportError, match="stdin"):
        command_line(["echo", "x" * MAX_COMMAND_BYTES])
    with pytest.raises(TypeError):
        ssh_transport("h", bogus=1)


def test_long_command_line_refused_before_sending(host_sshd: HostSshd, pool: SSHPool) -> None:
    t = transport_for(host_sshd, pool)
    with pytest.raises(TransportError, match="128 KiB"):
        t.run(["echo", "x" * (200 * 1024)])
    assert t.stats.round_trips == 0
    # Just under the limit still reaches the shell.
    r = t.run(["printf", "%s", "y" * (MAX_COMMAND_BYTES - 20)])
    assert len(r.stdout) == MAX_COMMAND_BYTES - 20


def test_timeout(host_sshd: HostSshd, pool: SSHPool) -> None:
    t = transport_for(host_sshd, pool)
    with pytest.raises(TransportError, match="timed out"):
        t.run(["sleep", "5"], timeout=0.3)
    assert t.run(["echo", "ok"]).stdout == b"ok\n"


def test_files(host_sshd: HostSshd, pool: SSHPool, tmp_path: Path) -> None:
    t = transport_for(host_sshd, pool)
    base = tmp_path / "remote dir; $x"
    files = {
        f"{base}/a/job 1.sh": b"#!/bin/sh\necho one\n",
        f"{base}/b/c/'quoted'.txt": b"x" * 100_000,
        f"{base}/empty": b"",
    }
    before = t.stats.round_trips
    t.upload(files, mode=0o750)
    assert t.stats.round_trips == before + 1
    for path, content in files.items():
        assert Path(path).read_bytes() == content
        assert Path(path).stat().st_mode & 0o777 == 0o750
    t.upload({f"{base}/a/job 1.sh": b"new"})
    assert Path(f"{base}/a/job 1.sh").read_bytes() == b"new"

    p = f"{base}/b/c/'quoted'.txt"
    assert t.read_range(p) == files[p]
    assert t.read_range(p, 99_990) == b"x" * 10
    assert t.read_range(p, 10, 5) == b"xxxxx"
    assert t.read_range(p, 200_000) == b""
    assert t.read_range(f"{base}/missing") == b""

    before = t.stats.round_trips
    sizes = t.sizes([p, f"{base}/empty", f"{base}/missing", f"{base}/a"])
    assert sizes == {p: 100_000, f"{base}/empty": 0, f"{base}/missing": None, f"{base}/a": None}
    assert t.stats.round_trips == before + 1

    t.remove_trees([f"{base}/a", f"{base}/b", f"{base}/nothing"])
    assert sorted(os.listdir(base)) == ["empty"]
    with pytest.raises(TransportError):
        t.remove_trees(["/"])

    assert t.home() == os.path.expanduser("~")
    rt = t.stats.round_trips
    assert t.expand("~/x") == os.path.expanduser("~/x")
    assert t.stats.round_trips == rt


def test_stream_follows_a_growing_file(host_sshd: HostSshd, pool: SSHPool, tmp_path: Path) -> None:
    t = transport_for(host_sshd, pool)
    log = tmp_path / "grow.log"
    log.write_bytes(b"0123456789")
    stream = t.stream(str(log), offset=4)
    got = next(stream)
    assert got == b"456789"

    def append() -> None:
        time.sleep(0.3)
        with open(log, "ab") as fh:
            fh.write(b"more\n")

    threading.Thread(target=append).start()
    got = b""
    while got != b"more\n":
        got += next(stream)
    stream.close()


# -- pooling --------------------------------------------------------------------


def test_100_concurrent_commands_over_max_sessions(host_sshd: HostSshd, pool: SSHPool) -> None:
    t = transport_for(host_sshd, pool, max_sessions=10, max_connections=4)
    n = 100

    def one(i: int) -> bytes:
        return t.run(["sh", "-c", 'sleep 0.2; echo "$1"', "sh", str(i)]).stdout

    with ThreadPoolExecutor(max_workers=n) as ex:
        outs = list(ex.map(one, range(n)))
    assert outs == [f"{i}\n".encode() for i in range(n)]
    assert t.stats.round_trips == n
    # 100 commands, at most 4 connections of 10 channels each.
    assert 1 <= t.stats.connections_opened <= 4
    assert t.connection_count() <= 4

    # Sequential commands reuse what is open.
    opened = t.stats.connections_opened
    for _ in range(20):
        t.run(["true"])
    assert t.stats.connections_opened == opened


def test_one_connection_when_commands_are_sequential(host_sshd: HostSshd, pool: SSHPool) -> None:
    t = transport_for(host_sshd, pool)
    for _ in range(30):
        assert t.run(["true"]).ok
    assert t.stats.connections_opened == 1


def test_idle_connections_closed(host_sshd: HostSshd, pool: SSHPool) -> None:
    t = transport_for(host_sshd, pool, idle_timeout=0.3)
    t.run(["true"])
    assert t.connection_count() == 1
    deadline = time.monotonic() + 5
    while t.connection_count() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert t.connection_count() == 0
    assert t.run(["echo", "back"]).stdout == b"back\n"
    assert t.stats.connections_opened == 2


def test_killed_connection_recovered_on_next_command(host_sshd: HostSshd, pool: SSHPool) -> None:
    t = transport_for(host_sshd, pool)
    assert t.run(["true"]).ok
    host_sshd.kill_ssh_connections()
    time.sleep(0.2)
    assert t.run(["echo", "again"]).stdout == b"again\n"
    assert t.stats.connections_opened == 2


def test_killed_connection_recovered_without_waiting(host_sshd: HostSshd, pool: SSHPool) -> None:
    # No pause: the client may not yet have noticed the drop when it opens a channel.
    t = transport_for(host_sshd, pool)
    for _ in range(5):
        assert t.run(["true"]).ok
        host_sshd.kill_ssh_connections()
        assert t.run(["echo", "x"]).stdout == b"x\n"


def test_command_cut_off_raises_connection_lost(
    host_sshd: HostSshd, pool: SSHPool, tmp_path: Path
) -> None:
    t = transport_for(host_sshd, pool)
    marker = tmp_path / "ran"
    killer = threading.Timer(0.5, host_sshd.kill_ssh_connections)
    killer.start()
    with pytest.raises(ConnectionLost):
        t.run(["sh", "-c", 'touch "$1"; sleep 10', "sh", str(marker)])
    # It was started once and never re-run behind the caller's back.
    assert marker.exists()
    marker.unlink()
    time.sleep(0.3)
    assert not marker.exists()
    assert t.run(["true"]).ok


# -- host keys and jumps ----------------------------------------------------------


def test_unknown_host_key_refused(host_sshd: HostSshd, pool: SSHPool, tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    t = ssh_transport(
        host_sshd.host, port=host_sshd.port, user=host_sshd.user,
        identity_file=host_sshd.identity_file, known_hosts=str(empty),
        config=[os.devnull], pool=pool,
    )
    with pytest.raises(HostKeyError) as info:
        t.run(["true"])
    msg = str(info.value)
    assert "\n" not in msg
    assert f"-p {host_sshd.port}" in msg and "ssh-keyscan" in msg
    assert empty.read_text() == ""


def test_changed_host_key_refused(host_sshd: HostSshd, pool: SSHPool, tmp_path: Path) -> None:
    other = tmp_path / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    pub = " ".join(other.with_suffix(".pub").read_text().split()[:2])
    kh = tmp_path / "known_hosts"
    kh.write_text(f"[127.0.0.1]:{host_sshd.port} {pub}\n")
    t = ssh_transport(
        host_sshd.host, port=host_sshd.port, user=host_sshd.user,
        identity_file=host_sshd.identity_file, known_hosts=str(kh),
        config=[os.devnull], pool=pool,
    )
    with pytest.raises(HostKeyError):
        t.run(["true"])


def test_proxy_jump(
    host_sshd: HostSshd, host_sshd_jump: HostSshd, pool: SSHPool, tmp_path: Path
) -> None:
    # One known_hosts and one key that both servers accept.
    kh = tmp_path / "known_hosts"
    kh.write_text(
        Path(host_sshd.known_hosts).read_text() + Path(host_sshd_jump.known_hosts).read_text()
    )
    with open(host_sshd_jump.workdir / "authorized_keys", "a") as fh:
        fh.write(Path(host_sshd.identity_file + ".pub").read_text())
    before = host_sshd_jump.accepted_logins()
    t = ssh_transport(
        host_sshd.host, port=host_sshd.port, user=host_sshd.user,
        identity_file=host_sshd.identity_file, known_hosts=str(kh),
        jump_host=f"{host_sshd_jump.user}@127.0.0.1:{host_sshd_jump.port}",
        config=[os.devnull], pool=pool,
    )
    assert t.run(["echo", "via jump"]).stdout == b"via jump\n"
    assert host_sshd_jump.accepted_logins() == before + 1


def test_proxy_jump_from_ssh_config(
    host_sshd: HostSshd, host_sshd_jump: HostSshd, pool: SSHPool, tmp_path: Path
) -> None:
    kh = tmp_path / "known_hosts"
    kh.write_text(
        Path(host_sshd.known_hosts).read_text() + Path(host_sshd_jump.known_hosts).read_text()
    )
    with open(host_sshd_jump.workdir / "authorized_keys", "a") as fh:
        fh.write(Path(host_sshd.identity_file + ".pub").read_text())
    cfg = tmp_path / "ssh_config"
    cfg.write_text(
        f"Host bastion\n  HostName 127.0.0.1\n  Port {host_sshd_jump.port}\n"
        f"  User {host_sshd_jump.user}\n"
        f"Host cluster\n  HostName 127.0.0.1\n  Port {host_sshd.port}\n  User {host_sshd.user}\n"
        f"  ProxyJump bastion\n"
        f"Host *\n  IdentityFile {host_sshd.identity_file}\n  UserKnownHostsFile {kh}\n"
    )
    before = host_sshd_jump.accepted_logins()
    t = ssh_transport("cluster", config=[str(cfg)], pool=pool)
    assert t.run(["echo", "alias"]).stdout == b"alias\n"
    assert host_sshd_jump.accepted_logins() == before + 1


def test_unreachable_host_is_one_line(pool: SSHPool) -> None:
    t = ssh_transport("127.0.0.1", port=_free_port(), config=[os.devnull], pool=pool)
    with pytest.raises(TransportError) as info:
        t.run(["true"])
    assert "\n" not in str(info.value)
