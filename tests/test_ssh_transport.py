"""The SSH transport against real OpenSSH servers in containers (tests/clusters.py)."""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import keyring
import keyring.backend
import pytest

from kong.errors import ConnectionLost, HostKeyError, TransportError
from kong.remote.pool import PromptUnavailable, SSHPool, store_keyring_secret
from kong.remote.ssh import MAX_COMMAND_BYTES, SSHTransport, command_line, ssh_transport
from tests.clusters import Cluster, ClusterFactory, needs_container


@pytest.fixture
def pool() -> Iterator[SSHPool]:
    p = SSHPool()
    yield p
    p.shutdown()


def transport_for(cluster: Cluster, pool: SSHPool, **kw: object) -> SSHTransport:
    """A transport to ``cluster`` that ignores ~/.ssh/config (the tests' own keys only)."""
    return ssh_transport(
        cluster.host,
        port=cluster.port,
        user=cluster.user,
        identity_file=str(cluster.identity_file),
        known_hosts=str(cluster.known_hosts),
        config=[os.devnull],
        pool=pool,
        **kw,
    )


def remote_tmpdir(t: SSHTransport) -> str:
    return t.run_checked(["mktemp", "-d"]).text().strip()


def as_user(cluster: Cluster, cmd: str) -> str:
    """Run ``cmd`` in the container as the SSH user, outside the transport under test."""
    code, out = cluster.exec(cmd, user=cluster.user)
    assert code == 0, out
    return out


# -- basics ---------------------------------------------------------------------


def test_run_stdin_and_exit_codes(sshd_server: Cluster, pool: SSHPool) -> None:
    t = transport_for(sshd_server, pool)
    r = t.run(["sh", "-c", "cat; echo err >&2; exit 3"], stdin=b"hello")
    assert (r.exit_code, r.stdout, r.stderr) == (3, b"hello", b"err\n")
    assert t.run(["true"]).ok
    assert t.stats.round_trips == 2
    assert t.stats.connections_opened == 1
    assert t.stats.bytes_received >= len(b"hello")
    assert t.label == f"{sshd_server.user}@{sshd_server.host}:{sshd_server.port}"


def test_same_settings_share_one_transport(sshd_server: Cluster, pool: SSHPool) -> None:
    assert transport_for(sshd_server, pool) is transport_for(sshd_server, pool)


def test_command_line_limit() -> None:
    assert command_line(["echo", "a b"]) == "echo 'a b'"
    with pytest.raises(TransportError, match="stdin"):
        command_line(["echo", "x" * MAX_COMMAND_BYTES])
    with pytest.raises(TransportError):
        command_line([])
    with pytest.raises(TypeError):
        ssh_transport("h", bogus=1)


def test_long_command_line_refused_before_sending(sshd_server: Cluster, pool: SSHPool) -> None:
    t = transport_for(sshd_server, pool)
    with pytest.raises(TransportError, match="128 KiB"):
        t.run(["echo", "x" * (200 * 1024)])
    assert t.stats.round_trips == 0
    # Just under the limit still reaches the shell (with kong's `umask 077; ` before it).
    r = t.run(["printf", "%s", "y" * (MAX_COMMAND_BYTES - 40)])
    assert len(r.stdout) == MAX_COMMAND_BYTES - 40
    # Bulk data belongs on stdin, which has no such limit.
    assert len(t.run(["wc", "-c"], stdin=b"z" * 1_000_000).stdout.strip()) == 7


def test_timeout(sshd_server: Cluster, pool: SSHPool) -> None:
    t = transport_for(sshd_server, pool)
    with pytest.raises(TransportError, match="timed out"):
        t.run(["sleep", "5"], timeout=0.3)
    assert t.run(["echo", "ok"]).stdout == b"ok\n"


def test_files(sshd_server: Cluster, pool: SSHPool) -> None:
    t = transport_for(sshd_server, pool)
    base = remote_tmpdir(t) + "/remote dir; $x"
    files = {
        f"{base}/a/job 1.sh": b"#!/bin/sh\necho one\n",
        f"{base}/b/c/'quoted'.txt": b"x" * 100_000,
        f"{base}/empty": b"",
    }
    before = t.stats.round_trips
    t.upload(files, mode=0o750)
    assert t.stats.round_trips == before + 1
    for path, content in files.items():
        assert t.read_range(path) == content
        assert as_user(sshd_server, f"stat -c %a {shlex.quote(path)}").strip() == "750"
    t.upload({f"{base}/a/job 1.sh": b"new"})
    assert t.read_range(f"{base}/a/job 1.sh") == b"new"
    assert as_user(sshd_server, f"stat -c %U {shlex.quote(base + '/empty')}").strip() == (
        sshd_server.user
    )

    p = f"{base}/b/c/'quoted'.txt"
    assert t.read_range(p, 99_990) == b"x" * 10
    assert t.read_range(p, 10, 5) == b"xxxxx"
    assert t.read_range(p, 200_000) == b""
    assert t.read_range(f"{base}/missing") == b""

    before = t.stats.round_trips
    sizes = t.sizes([p, f"{base}/empty", f"{base}/missing", f"{base}/a"])
    assert sizes == {p: 100_000, f"{base}/empty": 0, f"{base}/missing": None, f"{base}/a": None}
    assert t.stats.round_trips == before + 1

    t.remove_trees([f"{base}/a", f"{base}/b", f"{base}/nothing"])
    assert as_user(sshd_server, f"ls {shlex.quote(base)}").split() == ["empty"]
    with pytest.raises(TransportError):
        t.remove_trees(["/"])

    home = t.home()
    assert home == as_user(sshd_server, "printf %s ~")
    rt = t.stats.round_trips
    assert t.expand("~/x") == home + "/x"
    assert t.home() == home
    assert t.stats.round_trips == rt


def test_stream_follows_a_growing_file(sshd_server: Cluster, pool: SSHPool) -> None:
    t = transport_for(sshd_server, pool)
    log = remote_tmpdir(t) + "/grow.log"
    t.upload({log: b"0123456789"})
    stream = t.stream(log, offset=4)
    assert next(stream) == b"456789"
    threading.Timer(0.3, as_user, (sshd_server, f"echo more >> {log}")).start()
    got = b""
    while got != b"more\n":
        got += next(stream)
    stream.close()
    # Closing the generator gave its channel back.
    assert t.run(["true"]).ok


# -- pooling --------------------------------------------------------------------


def test_100_concurrent_commands_over_max_sessions(
    private_sshd_server: Cluster, pool: SSHPool
) -> None:
    sshd_server = private_sshd_server  # counts connections: a server of its own
    t = transport_for(sshd_server, pool, max_sessions=10, max_connections=4)
    n = 100

    def one(i: int) -> bytes:
        return t.run(["sh", "-c", 'sleep 0.2; echo "$1"', "sh", str(i)]).stdout

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=n) as ex:
        outs = list(ex.map(one, range(n)))
    elapsed = time.monotonic() - started
    assert outs == [f"{i}\n".encode() for i in range(n)]
    assert t.stats.round_trips == n
    # 100 commands over at most 4 connections of 10 channels, none refused.
    assert 1 <= t.stats.connections_opened <= 4
    assert t.connection_count() <= 4
    if sshd_server.container_id is not None:
        assert sshd_server.ssh_connection_count() <= 4
    # Channels ran side by side: far less than 100 x 0.2 s.
    assert elapsed < 10, elapsed

    # Sequential commands reuse what is open.
    opened = t.stats.connections_opened
    for _ in range(20):
        t.run(["true"])
    assert t.stats.connections_opened == opened


def test_one_connection_when_commands_are_sequential(sshd_server: Cluster, pool: SSHPool) -> None:
    t = transport_for(sshd_server, pool)
    for _ in range(30):
        assert t.run(["true"]).ok
    assert t.stats.connections_opened == 1


def test_idle_connections_closed(sshd_server: Cluster, pool: SSHPool) -> None:
    t = transport_for(sshd_server, pool, idle_timeout=0.3)
    t.run(["true"])
    assert t.connection_count() == 1
    deadline = time.monotonic() + 5
    while t.connection_count() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert t.connection_count() == 0
    assert t.run(["echo", "back"]).stdout == b"back\n"
    assert t.stats.connections_opened == 2


def test_killed_connection_recovered_on_next_command(
    private_sshd_server: Cluster, pool: SSHPool
) -> None:
    sshd_server = private_sshd_server  # counts connections: a server of its own
    needs_container(sshd_server)
    t = transport_for(sshd_server, pool)
    assert t.run(["true"]).ok
    assert sshd_server.kill_ssh_connections() == 1
    assert t.run(["echo", "again"]).stdout == b"again\n"
    assert t.stats.connections_opened == 2


def test_killed_connection_recovered_repeatedly(
    private_sshd_server: Cluster, pool: SSHPool
) -> None:
    sshd_server = private_sshd_server  # counts connections: a server of its own
    needs_container(sshd_server)
    t = transport_for(sshd_server, pool)
    for _ in range(3):
        assert t.run(["true"]).ok
        sshd_server.kill_ssh_connections()
        assert t.run(["echo", "x"]).stdout == b"x\n"


def test_command_cut_off_raises_connection_lost(
    private_sshd_server: Cluster, pool: SSHPool
) -> None:
    sshd_server = private_sshd_server  # counts connections: a server of its own
    needs_container(sshd_server)
    t = transport_for(sshd_server, pool)
    marker = remote_tmpdir(t) + "/ran"
    killer = threading.Timer(0.5, sshd_server.kill_ssh_connections)
    killer.start()
    with pytest.raises(ConnectionLost):
        t.run(["sh", "-c", 'echo x >> "$1"; sleep 10', "sh", marker])
    # It ran once and was not re-run behind the caller's back.
    time.sleep(0.5)
    assert t.read_range(marker) == b"x\n"


# -- host keys and jumps ----------------------------------------------------------


def test_unknown_host_key_refused(sshd_server: Cluster, pool: SSHPool, tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    t = ssh_transport(
        sshd_server.host, port=sshd_server.port, user=sshd_server.user,
        identity_file=str(sshd_server.identity_file), known_hosts=str(empty),
        config=[os.devnull], pool=pool,
    )
    with pytest.raises(HostKeyError) as info:
        t.run(["true"])
    msg = str(info.value)
    assert "\n" not in msg
    assert f"-p {sshd_server.port}" in msg and "ssh-keyscan" in msg
    assert empty.read_text() == ""


def test_changed_host_key_refused(sshd_server: Cluster, pool: SSHPool, tmp_path: Path) -> None:
    other = tmp_path / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    pub = " ".join(other.with_suffix(".pub").read_text().split()[:2])
    kh = tmp_path / "known_hosts"
    kh.write_text(f"[{sshd_server.host}]:{sshd_server.port} {pub}\n")
    t = ssh_transport(
        sshd_server.host, port=sshd_server.port, user=sshd_server.user,
        identity_file=str(sshd_server.identity_file), known_hosts=str(kh),
        config=[os.devnull], pool=pool,
    )
    with pytest.raises(HostKeyError, match="unknown or has changed"):
        t.run(["true"])


@pytest.fixture
def both_known(sshd_server: Cluster, sshd_jump_server: Cluster, tmp_path: Path) -> Path:
    kh = tmp_path / "known_hosts"
    kh.write_text(sshd_server.known_hosts.read_text() + sshd_jump_server.known_hosts.read_text())
    return kh


def test_proxy_jump(
    sshd_server: Cluster, sshd_jump_server: Cluster, pool: SSHPool, both_known: Path
) -> None:
    needs_container(sshd_jump_server)
    # jump_host= logs in to the jump server with the target's key, so let that key in.
    pub = Path(str(sshd_server.identity_file) + ".pub").read_text().strip()
    code, out = sshd_jump_server.exec(
        f"grep -qxF {shlex.quote(pub)} /etc/ssh/authorized_keys/{sshd_jump_server.user} || "
        f"echo {shlex.quote(pub)} >> /etc/ssh/authorized_keys/{sshd_jump_server.user}"
    )
    assert code == 0, out
    before = sshd_jump_server.accepted_logins()
    t = ssh_transport(
        sshd_server.host, port=sshd_server.port, user=sshd_server.user,
        identity_file=str(sshd_server.identity_file), known_hosts=str(both_known),
        jump_host=f"{sshd_jump_server.user}@{sshd_jump_server.host}:{sshd_jump_server.port}",
        config=[os.devnull], pool=pool,
    )
    assert t.run(["echo", "via jump"]).stdout == b"via jump\n"
    assert sshd_jump_server.accepted_logins() == before + 1


def test_proxy_jump_from_ssh_config(
    sshd_server: Cluster, sshd_jump_server: Cluster, pool: SSHPool, both_known: Path,
    tmp_path: Path,
) -> None:
    # Host aliases, HostName, Port, User, IdentityFile, UserKnownHostsFile and
    # ProxyJump all come from the config file, as from ~/.ssh/config.
    cfg = tmp_path / "ssh_config"
    cfg.write_text(
        f"Host bastion\n  HostName {sshd_jump_server.host}\n  Port {sshd_jump_server.port}\n"
        f"  User {sshd_jump_server.user}\n  IdentityFile {sshd_jump_server.identity_file}\n"
        f"Host cluster\n  HostName {sshd_server.host}\n  Port {sshd_server.port}\n"
        f"  User {sshd_server.user}\n  IdentityFile {sshd_server.identity_file}\n"
        f"  ProxyJump bastion\n"
        f"Host *\n  UserKnownHostsFile {both_known}\n"
    )
    jump_logins = (
        sshd_jump_server.accepted_logins() if sshd_jump_server.container_id else None
    )
    t = ssh_transport("cluster", config=[str(cfg)], pool=pool)
    assert t.run(["echo", "alias"]).stdout == b"alias\n"
    if jump_logins is not None:
        assert sshd_jump_server.accepted_logins() == jump_logins + 1


def test_unreachable_host_is_one_line(pool: SSHPool) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t = ssh_transport("127.0.0.1", port=port, config=[os.devnull], pool=pool)
    with pytest.raises(TransportError) as info:
        t.run(["true"])
    assert "\n" not in str(info.value)


# -- keyboard-interactive (one-time codes) --------------------------------------------

OTP = "424242"


@dataclass
class OtpServer:
    """A second OpenSSH sshd inside an sshd container that demands publickey and then a
    keyboard-interactive code (PAM: pam_exec checking the answer against ``OTP``)."""

    cluster: Cluster
    port: int
    known_hosts: Path

    def kill_ssh_connections(self) -> None:
        code, out = self.cluster.exec(
            'for c in $(pgrep -P "$(cat /run/otp-sshd.pid)"); do kill -KILL "$c"; done; true'
        )
        assert code == 0, out


def start_otp_server(factory: ClusterFactory, name: str, state_dir: Path) -> OtpServer:
    """Start an sshd container named ``name`` with a one-time-code sshd inside it."""
    cluster = factory.start("sshd", name)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    script = f"""
set -e
printf '#!/bin/sh\\ncode=$(tr -d "\\\\000")\\n[ "$code" = "{OTP}" ]\\n' > /usr/local/bin/kong-otp
chmod 755 /usr/local/bin/kong-otp
cat > /etc/pam.d/sshd <<'EOF2'
auth required pam_exec.so expose_authtok quiet /usr/local/bin/kong-otp
auth optional pam_permit.so
account required pam_permit.so
session required pam_permit.so
EOF2
/usr/sbin/sshd -p {port} -o ListenAddress=127.0.0.1 \\
    -o HostKey=/etc/ssh/ssh_host_ed25519_key -o PasswordAuthentication=no \\
    -o KbdInteractiveAuthentication=yes -o UsePAM=yes \\
    -o AuthenticationMethods=publickey,keyboard-interactive \\
    -o AuthorizedKeysFile=/etc/ssh/authorized_keys/%u -o PidFile=/run/otp-sshd.pid
for i in $(seq 100); do ss -Hltn "sport = :{port}" | grep -q . && exit 0; sleep 0.05; done
exit 1
"""
    code, out = cluster.exec(["bash", "-c", script])
    assert code == 0, out
    key = cluster.known_hosts.read_text().split(" ", 1)[1]
    kh = state_dir / "known_hosts"
    kh.write_text(f"[{cluster.host}]:{port} {key}")
    return OtpServer(cluster, port, kh)


@pytest.fixture(scope="module")
def otp_server(
    cluster_factory: ClusterFactory, tmp_path_factory: pytest.TempPathFactory
) -> OtpServer:
    return start_otp_server(cluster_factory, "sshd-otp", tmp_path_factory.mktemp("otp"))


def otp_transport(srv: OtpServer, pool: SSHPool, **kw: object) -> SSHTransport:
    c = srv.cluster
    return ssh_transport(
        c.host, port=srv.port, user=c.user, identity_file=str(c.identity_file),
        known_hosts=str(srv.known_hosts), config=[os.devnull], pool=pool, **kw,
    )


def test_one_time_code_asked_once_per_connection(otp_server: OtpServer, pool: SSHPool) -> None:
    asked: list[list[str]] = []

    def prompt(label: str, instructions: str, prompts: Sequence[tuple[str, bool]]) -> list[str]:
        asked.append([text for text, _ in prompts])
        return [OTP for _ in prompts]

    t = otp_transport(otp_server, pool, prompt=prompt)
    with ThreadPoolExecutor(max_workers=30) as ex:
        outs = list(ex.map(lambda i: t.run(["sh", "-c", "sleep 0.1; echo ok"]).stdout, range(30)))
    assert outs == [b"ok\n"] * 30
    # Asked once, and no second connection that would cost another code.
    assert len(asked) == 1 and len(asked[0]) == 1
    assert t.stats.connections_opened == 1

    otp_server.kill_ssh_connections()
    assert t.run(["echo", "again"]).stdout == b"again\n"
    assert len(asked) == 2


def test_wrong_code_refused(otp_server: OtpServer, pool: SSHPool) -> None:
    t = otp_transport(otp_server, pool, prompt=lambda label, instr, prompts: ["000000"])
    with pytest.raises(TransportError, match="refused the login"):
        t.run(["true"])


def test_no_terminal_fails_at_once(otp_server: OtpServer, pool: SSHPool) -> None:
    # The default prompt asks on the terminal; under pytest there is none.
    t = otp_transport(otp_server, pool)
    started = time.monotonic()
    with pytest.raises(PromptUnavailable) as info:
        t.run(["true"])
    assert time.monotonic() - started < 10
    assert "no terminal" in str(info.value) and "\n" not in str(info.value)


def test_server_with_fewer_sessions_than_configured(
    cluster_factory: ClusterFactory, pool: SSHPool
) -> None:
    # The site allows 2 sessions per connection; kong believes 10. Refused
    # channels wait for free ones: nothing fails, nothing runs twice.
    cluster = cluster_factory.start("sshd", "sshd-ms2", max_sessions=2)
    t = transport_for(cluster, pool, max_sessions=10, max_connections=2)
    with ThreadPoolExecutor(max_workers=20) as ex:
        outs = list(ex.map(lambda i: t.run(["sh", "-c", "sleep 0.3; echo $0", str(i)]).stdout,
                           range(20)))
    assert outs == [f"{i}\n".encode() for i in range(20)]
    assert t.stats.round_trips == 20
    assert t.stats.connections_opened <= 2


def test_pool_status_and_shutdown(sshd_server: Cluster) -> None:
    pool = SSHPool()
    t = transport_for(sshd_server, pool)
    t.run(["true"])
    [row] = pool.status()
    assert row["host"] == t.label
    assert (row["connections"], row["channels_in_use"], row["round_trips"]) == (1, 0, 1)
    pool.shutdown()
    assert pool.status() == []
    # Usable again afterwards: a new loop thread and fresh connections.
    assert t.run(["echo", "up"]).stdout == b"up\n"
    pool.shutdown()


def test_aes_gcm_is_negotiated_first_unless_the_ssh_config_names_ciphers(
    sshd_server: Cluster, tmp_path: Path
) -> None:
    # AES-GCM costs this process about half chacha20's CPU per byte (a pull's limit);
    # a user's own Ciphers line must still decide.
    fast = SSHPool()
    transport_for(sshd_server, fast).run_checked(["true"])
    assert fast.status()[0]["ciphers"] == ["aes128-gcm@openssh.com"]
    fast.shutdown()
    config = tmp_path / "ssh_config"
    config.write_text("Host *\n    Ciphers chacha20-poly1305@openssh.com,aes256-ctr\n")
    own = SSHPool()
    ssh_transport(sshd_server.host, port=sshd_server.port, user=sshd_server.user,
                  identity_file=str(sshd_server.identity_file),
                  known_hosts=str(sshd_server.known_hosts), config=[str(config)],
                  pool=own).run_checked(["true"])
    assert own.status()[0]["ciphers"] == ["chacha20-poly1305@openssh.com"]
    own.shutdown()


def test_many_callers_to_a_silent_host_fail_together(pool: SSHPool) -> None:
    # A port that accepts TCP but never speaks SSH, and a 1 s connect timeout:
    # 50 callers must not each wait out a connect timeout of their own.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(100)
        port = silent.getsockname()[1]
        t = ssh_transport(
            "127.0.0.1", port=port, config=[os.devnull], pool=pool, connect_timeout=1
        )
        started = time.monotonic()

        def one(_: int) -> str:
            try:
                t.run(["true"])
            except TransportError as exc:
                return str(exc)
            return "ran"

        with ThreadPoolExecutor(max_workers=50) as ex:
            errors = list(ex.map(one, range(50)))
        elapsed = time.monotonic() - started
    assert all(e == errors[0] and "timed out" in e for e in errors), set(errors)
    assert elapsed < 4, elapsed


def test_silently_dead_idle_connection_replaced(
    private_sshd_server: Cluster, pool: SSHPool
) -> None:
    sshd_server = private_sshd_server  # counts connections: a server of its own
    # A connection whose server stopped answering without closing TCP (a laptop
    # that slept, a NAT that forgot it): probed before use, dropped, replaced.
    needs_container(sshd_server)
    t = transport_for(sshd_server, pool, probe_after=0.5, probe_timeout=1)
    assert t.run(["true"]).ok
    code, out = sshd_server.exec(
        'for m in $(pgrep -P "$(cat /run/kong-sshd.pid)"); do '
        'kill -STOP "$m" $(pgrep -P "$m"); done'
    )
    assert code == 0, out
    try:
        time.sleep(0.6)
        started = time.monotonic()
        assert t.run(["echo", "fresh"]).stdout == b"fresh\n"
        assert time.monotonic() - started < 5
        assert t.stats.connections_opened == 2
    finally:
        sshd_server.kill_ssh_connections()


def test_stream_survives_a_dropped_connection(private_sshd_server: Cluster, pool: SSHPool) -> None:
    sshd_server = private_sshd_server  # counts connections: a server of its own
    # Reading is idempotent: a stream cut off resumes from the last byte it yielded.
    needs_container(sshd_server)
    t = transport_for(sshd_server, pool)
    log = remote_tmpdir(t) + "/s.log"
    t.upload({log: b"a\n"})
    stream = t.stream(log, poll_interval=0.05)
    assert next(stream) == b"a\n"
    sshd_server.kill_ssh_connections()
    as_user(sshd_server, f"echo b >> {log}")
    got = b""
    while not got.endswith(b"b\n"):
        got += next(stream)
    stream.close()
    assert got == b"b\n"
    assert t.stats.connections_opened == 2


# -- secrets from keyring --------------------------------------------------------------


class InMemoryKeyringForTests(keyring.backend.KeyringBackend):
    """A stand-in keyring backend: this machine has no desktop keyring to store into.
    kong's code path (keyring.get_password("kong", "user@host")) is the real one."""

    priority = 1  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.secrets: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.secrets.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.secrets[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        self.secrets.pop((service, username), None)


@pytest.fixture
def memory_keyring() -> Iterator[InMemoryKeyringForTests]:
    previous = keyring.get_keyring()
    backend = InMemoryKeyringForTests()
    keyring.set_keyring(backend)
    yield backend
    keyring.set_keyring(previous)


def test_password_prompt_answered_from_keyring(
    otp_server: OtpServer, pool: SSHPool, memory_keyring: InMemoryKeyringForTests
) -> None:
    # The PAM module asks "Password: "; the answer stored in keyring is used, nobody is asked.
    c = otp_server.cluster
    store_keyring_secret(c.user, c.host, OTP)

    def prompt(label: str, instructions: str, prompts: Sequence[tuple[str, bool]]) -> list[str]:
        raise AssertionError("asked although keyring holds the answer")

    t = otp_transport(otp_server, pool, prompt=prompt)
    assert t.run(["echo", "ok"]).stdout == b"ok\n"


def test_key_passphrase_from_keyring(
    sshd_server: Cluster, pool: SSHPool, memory_keyring: InMemoryKeyringForTests,
    tmp_path: Path,
) -> None:
    needs_container(sshd_server)
    key = tmp_path / "id_locked"
    subprocess.run(
        # PKCS#8, which the cryptography package decrypts; OpenSSH's own format
        # needs bcrypt as well (see test_openssh_encrypted_key_without_bcrypt).
        ["ssh-keygen", "-q", "-t", "ecdsa", "-m", "PKCS8", "-N", "s3cret phrase", "-f", str(key)],
        check=True,
    )
    pub = key.with_suffix(".pub").read_text().strip()
    code, out = sshd_server.exec(
        f"echo {shlex.quote(pub)} >> /etc/ssh/authorized_keys/{sshd_server.user}"
    )
    assert code == 0, out

    def locked(p: SSHPool) -> SSHTransport:
        return ssh_transport(
            sshd_server.host, port=sshd_server.port, user=sshd_server.user,
            identity_file=str(key), known_hosts=str(sshd_server.known_hosts),
            config=[os.devnull], pool=p,
        )

    with pytest.raises(TransportError, match="passphrase"):
        locked(pool).run(["true"])
    store_keyring_secret(sshd_server.user, sshd_server.host, "s3cret phrase")
    fresh = SSHPool()
    try:
        assert locked(fresh).run(["echo", "unlocked"]).stdout == b"unlocked\n"
    finally:
        fresh.shutdown()


def test_openssh_encrypted_key_is_one_clear_line(
    sshd_server: Cluster, pool: SSHPool, memory_keyring: InMemoryKeyringForTests,
    tmp_path: Path,
) -> None:
    key = tmp_path / "id_openssh_locked"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "phrase", "-f", str(key)], check=True
    )
    store_keyring_secret(sshd_server.user, sshd_server.host, "wrong phrase")
    t = ssh_transport(
        sshd_server.host, port=sshd_server.port, user=sshd_server.user,
        identity_file=str(key), known_hosts=str(sshd_server.known_hosts),
        config=[os.devnull], pool=pool,
    )
    with pytest.raises(TransportError) as info:
        t.run(["true"])
    assert "\n" not in str(info.value)
    assert "bcrypt" in str(info.value) or "passphrase" in str(info.value)


def test_key_from_ssh_agent(
    sshd_server: Cluster, pool: SSHPool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    needs_container(sshd_server)
    key = tmp_path / "id_agent"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    pub = key.with_suffix(".pub").read_text().strip()
    code, out = sshd_server.exec(
        f"echo {shlex.quote(pub)} >> /etc/ssh/authorized_keys/{sshd_server.user}"
    )
    assert code == 0, out
    sock = tmp_path / "agent.sock"
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 5
        while not sock.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        env = {**os.environ, "SSH_AUTH_SOCK": str(sock)}
        subprocess.run(["ssh-add", "-q", str(key)], env=env, check=True, capture_output=True)
        # Only the agent holds the key now.
        key.unlink()
        monkeypatch.setenv("SSH_AUTH_SOCK", str(sock))
        t = ssh_transport(
            sshd_server.host, port=sshd_server.port, user=sshd_server.user,
            known_hosts=str(sshd_server.known_hosts), config=[os.devnull], pool=pool,
        )
        assert t.run(["echo", "agent"]).stdout == b"agent\n"
    finally:
        agent.terminate()
        agent.wait(5)
