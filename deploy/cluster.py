"""Start, describe and stop the containerized test clusters.

Shared by the pytest plugin (``tests/clusters.py``) and the command line
(``deploy/testcluster.py``). A cluster is one container of a ``kong-test/*`` image
run with host networking: every daemon is configured at start to use free ports
on 127.0.0.1, so several clusters (even of one kind) run side by side.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")

from testcontainers.core.config import testcontainers_config
from testcontainers.core.container import DockerContainer

from deploy.images import SPECS, build_image

# The Ryuk reaper image cannot be pulled here; containers are removed by us.
testcontainers_config.ryuk_disabled = True

KINDS = tuple(name for name, spec in SPECS.items() if spec.cluster)
# Ports each kind needs besides sshd's, by the environment variable that passes them.
EXTRA_PORTS: dict[str, tuple[str, ...]] = {name: spec.ports for name, spec in SPECS.items()}
DRIVERS = {name: spec.driver for name, spec in SPECS.items() if spec.driver}
LABEL = "kong.testcluster"
HOST = "127.0.0.1"
USER = "kong"
REMOTE_DIR = "~/.kong"
START_TIMEOUT = 300.0


class ClusterError(RuntimeError):
    """A test cluster could not be started or used; the message says why."""


@dataclass(frozen=True)
class Cluster:
    """A running test cluster reachable over SSH, as the tests and kong see it.

    ``container_id`` is None for an external cluster (pointed at by
    ``KONG_TEST_*``); the container-only helpers (``exec``, ``logs``,
    ``kill_ssh_connections``, ``ssh_connection_count``, ``accepted_logins``)
    then raise ClusterError.
    """

    name: str
    kind: str
    host: str
    port: int
    user: str
    identity_file: Path
    known_hosts: Path
    remote_dir: str = REMOTE_DIR
    container_id: str | None = None
    container_name: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    ports: Mapping[str, int] = field(default_factory=dict)

    # -- what kong needs -------------------------------------------------------------
    def profile(self) -> dict[str, Any]:
        """The block to put under ``profiles: <name>:`` in kong's config."""
        block: dict[str, Any] = {}
        if self.kind in DRIVERS:
            block["driver"] = DRIVERS[self.kind]
        block.update(
            host=self.host,
            port=self.port,
            user=self.user,
            identity_file=str(self.identity_file),
            known_hosts=str(self.known_hosts),
            remote_dir=self.remote_dir,
        )
        block.update(self.options)
        return block

    def profile_yaml(self) -> str:
        return yaml.safe_dump({self.name: self.profile()}, sort_keys=False)

    # -- plain ssh -------------------------------------------------------------------
    def ssh_options(self) -> list[str]:
        """Options for OpenSSH's ``ssh``/``scp`` that reach this cluster non-interactively."""
        return [
            "-i",
            str(self.identity_file),
            "-o",
            f"UserKnownHostsFile={self.known_hosts}",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "ConnectTimeout=20",
            "-p",
            str(self.port),
        ]

    def ssh_command(self, command: str | Sequence[str]) -> list[str]:
        """argv of ``ssh`` running ``command`` (a shell string, or argv quoted with shlex)."""
        remote = command if isinstance(command, str) else shlex.join(command)
        return ["ssh", *self.ssh_options(), f"{self.user}@{self.host}", remote]

    def ssh(
        self, command: str | Sequence[str], *, input: str | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Run ``command`` on the cluster as the SSH user through plain ``ssh``."""
        return subprocess.run(
            self.ssh_command(command),
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    # -- inside the container (tests' view, as root) ------------------------------------
    def _container(self) -> Any:
        if self.container_id is None:
            raise ClusterError(f"{self.name} is an external cluster: it has no container")
        import docker

        return docker.from_env().containers.get(self.container_id)

    def exec(self, cmd: str | Sequence[str], user: str = "root") -> tuple[int, str]:
        """Run ``cmd`` in the container (``docker exec``, as root by default); return
        (exit code, stdout and stderr). A string runs through ``sh -c``."""
        argv = ["sh", "-c", cmd] if isinstance(cmd, str) else list(cmd)
        code, output = self._container().exec_run(argv, user=user)
        return int(code), output.decode(errors="replace")

    def logs(self) -> str:
        """The container's log: the entrypoint's messages and sshd's VERBOSE log."""
        return bytes(self._container().logs()).decode(errors="replace")

    def ssh_connection_count(self) -> int:
        """Number of client connections sshd serves right now (its per-connection
        processes, children of the listener)."""
        code, out = self.exec(["sh", "-c", 'pgrep -c -P "$(cat /run/kong-sshd.pid)" || true'])
        if code != 0:
            raise ClusterError(f"counting ssh connections failed: {out}")
        return int(out.strip().splitlines()[-1])

    def accepted_logins(self) -> int:
        """Number of SSH logins accepted since the container started (sshd's log)."""
        return len(re.findall(r"^Accepted publickey for ", self.logs(), flags=re.MULTILINE))

    def kill_ssh_connections(self) -> int:
        """Kill the sshd processes serving clients (not the listener): every client
        connection drops at once, as on a network failure. Returns how many
        connection processes were killed."""
        script = (
            "l=$(cat /run/kong-sshd.pid); n=0; "
            'for m in $(pgrep -P "$l"); do '
            # The session's children first found, then its monitor killed and counted:
            # killed children first, a monitor may exit by itself before its own kill
            # and the connection would not be counted.
            '  cs=$(pgrep -P "$m"); '
            '  kill -KILL "$m" 2>/dev/null && n=$((n+1)); '
            '  for c in $cs; do kill -KILL "$c" 2>/dev/null || true; done; '
            "done; echo $n"
        )
        code, out = self.exec(["bash", "-c", script])
        if code != 0:
            raise ClusterError(f"killing ssh connections failed: {out}")
        return int(out.strip().splitlines()[-1])

    # -- persistence (for the CLI and KONG_TEST_* files) ------------------------------
    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "identity_file": str(self.identity_file),
            "known_hosts": str(self.known_hosts),
            "remote_dir": self.remote_dir,
            "container_id": self.container_id,
            "container_name": self.container_name,
            "options": dict(self.options),
            "ports": dict(self.ports),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Cluster:
        return cls(
            name=data["name"],
            kind=data["kind"],
            host=data["host"],
            port=int(data["port"]),
            user=data["user"],
            identity_file=Path(data["identity_file"]),
            known_hosts=Path(data["known_hosts"]),
            remote_dir=data.get("remote_dir", REMOTE_DIR),
            container_id=data.get("container_id"),
            container_name=data.get("container_name"),
            options=dict(data.get("options", {})),
            ports={k: int(v) for k, v in data.get("ports", {}).items()},
        )


PROFILE_KEYS = ("driver", "host", "port", "user", "identity_file", "known_hosts", "remote_dir")


def cluster_from_profile_file(path: Path, kind: str) -> Cluster:
    """A Cluster for an already-running or real cluster described by a kong profile.

    The file holds one profile block: either the mapping itself, ``{NAME: {...}}`` as
    printed by ``testcluster.py up``, or a kong config with ``profiles:`` (its first
    profile of the driver ``kind``). If a ``cluster.json`` written by ``testcluster.py
    up`` lies beside it, the container is known too (so ``exec`` etc. work).
    """
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ClusterError(f"cannot read cluster profile {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ClusterError(f"{path}: expected a mapping (a kong profile block)")
    name = path.stem
    if "profiles" in data and isinstance(data["profiles"], dict):
        data = data["profiles"]
    if "host" not in data:
        candidates = [
            (key, value)
            for key, value in data.items()
            # a profile names its driver ("lsf"), a cluster its kind ("lsf-sim")
            if isinstance(value, dict)
            and value.get("driver", kind) in (kind, DRIVERS.get(kind, kind))
        ]
        if not candidates:
            raise ClusterError(f"{path}: no profile with driver {kind!r}")
        name, data = candidates[0]
    sidecar = path.parent / "cluster.json"
    if sidecar.exists():
        saved = Cluster.from_json(json.loads(sidecar.read_text()))
        if saved.port == int(data.get("port", 22)) and saved.kind == kind:
            return saved
    options = {k: v for k, v in data.items() if k not in PROFILE_KEYS}
    home = Path.home()
    return Cluster(
        name=str(name),
        kind=kind,
        host=str(data.get("host", HOST)),
        port=int(data.get("port", 22)),
        user=str(data.get("user", os.environ.get("USER", USER))),
        identity_file=Path(
            str(data.get("identity_file", home / ".ssh" / "id_ed25519"))
        ).expanduser(),
        known_hosts=Path(str(data.get("known_hosts", home / ".ssh" / "known_hosts"))).expanduser(),
        remote_dir=str(data.get("remote_dir", REMOTE_DIR)),
        options=options,
    )


def free_ports(count: int) -> list[int]:
    """Distinct TCP ports free on every interface right now (daemons such as
    slurmctld bind the wildcard address)."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def ensure_keypair(directory: Path) -> Path:
    """An ed25519 key pair (``id_ed25519``, ``id_ed25519.pub``) in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    key = directory / "id_ed25519"
    if not key.exists():
        result = subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "kong-test", "-f", str(key)],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise ClusterError(f"ssh-keygen failed: {result.stderr.strip()}")
    return key


@dataclass
class RunningCluster:
    """A cluster started here, with the handle that stops it."""

    cluster: Cluster
    container: DockerContainer
    image_seconds: float
    start_seconds: float

    def stop(self) -> None:
        self.container.stop()


def _container_log(container: DockerContainer) -> str:
    out, err = container.get_logs()
    return (out + err).decode(errors="replace")


#: capabilities a kind needs beyond Docker's default set. Slurm's job accounting (and
#: with it JobAcctGatherParams=OverMemoryKill) reads /proc/<pid>/io of the job's
#: processes as root: without CAP_SYS_PTRACE that read fails for another user's
#: process, and slurmstepd then drops the process from its accounting altogether.
CAP_ADD: dict[str, tuple[str, ...]] = {"slurm": ("SYS_PTRACE",)}


def start_cluster(
    kind: str,
    name: str,
    state_dir: Path,
    *,
    container_name: str | None = None,
    env: Mapping[str, str] | None = None,
    labels: Mapping[str, str] | None = None,
    max_sessions: int = 10,
    cpus: int = 8,
    log: Callable[[str], None] = print,
    timeout: float = START_TIMEOUT,
) -> RunningCluster:
    """Build the image if needed, start a cluster and wait until it runs a job.

    Writes ``id_ed25519``, ``known_hosts``, ``profile.yml`` and ``cluster.json`` under
    ``state_dir/name/``. The scheduler is ready when this returns: the container's
    entrypoint has submitted a job as the SSH user and seen it in the history.
    """
    if kind not in KINDS:
        raise ClusterError(f"unknown cluster kind {kind!r}; known: {', '.join(KINDS)}")
    t0 = time.monotonic()
    built = build_image(kind, log)
    image_seconds = time.monotonic() - t0
    directory = state_dir / name
    key = ensure_keypair(directory)
    ports = dict(
        zip(
            ("KONG_SSH_PORT", *EXTRA_PORTS[kind]),
            free_ports(1 + len(EXTRA_PORTS[kind])),
            strict=True,
        )
    )
    cname = container_name or f"kong-test-{name}"
    container = (
        DockerContainer(built.ref)
        .with_name(cname)
        .with_kwargs(
            network_mode="host",
            cap_add=list(CAP_ADD.get(kind, ())),
            labels={
                LABEL: name,
                "kong.kind": kind,
                "kong.state_dir": str(directory),
                **(labels or {}),
            },
        )
        .with_env("KONG_AUTHORIZED_KEY", (directory / "id_ed25519.pub").read_text().strip())
        .with_env("KONG_SSH_USER", USER)
        .with_env("KONG_SSH_MAX_SESSIONS", str(max_sessions))
        .with_env("KONG_CLUSTER_NAME", name)
        .with_env("KONG_CPUS", str(cpus))
    )
    for var, port in ports.items():
        container = container.with_env(var, str(port))
    for var, value in (env or {}).items():
        container = container.with_env(var, value)
    t1 = time.monotonic()
    try:
        container.start()
    except Exception as exc:
        raise ClusterError(f"cannot start container {cname} from {built.ref}: {exc}") from exc
    try:
        hostkey = _wait_ready(container, cname, timeout)
    except BaseException:
        container.stop()
        raise
    start_seconds = time.monotonic() - t1
    known_hosts = directory / "known_hosts"
    ssh_port = ports["KONG_SSH_PORT"]
    known_hosts.write_text(f"[{HOST}]:{ssh_port} {hostkey}\n")
    options: dict[str, Any] = {}
    if kind == "slurm":
        options = {"partition": "debug", "account": "kong"}
    elif kind == "sge":
        options = {"queue": "all.q", "pe": "smp"}
    wrapped = container.get_wrapped_container()
    cluster = Cluster(
        name=name,
        kind=kind,
        host=HOST,
        port=ssh_port,
        user=USER,
        identity_file=key,
        known_hosts=known_hosts,
        remote_dir=REMOTE_DIR,
        container_id=wrapped.id,
        container_name=cname,
        options=options,
        ports={
            var.removeprefix("KONG_").removesuffix("_PORT").lower(): p for var, p in ports.items()
        },
    )
    (directory / "profile.yml").write_text(cluster.profile_yaml())
    (directory / "cluster.json").write_text(json.dumps(cluster.to_json(), indent=2) + "\n")
    log(
        f"{kind} cluster {name} up on {HOST}:{ssh_port} in {start_seconds:.1f}s "
        f"(image {built.ref}: {'present' if built.cached else f'built in {built.seconds:.1f}s'})"
    )
    return RunningCluster(cluster, container, image_seconds, start_seconds)


def _wait_ready(container: DockerContainer, cname: str, timeout: float) -> str:
    """Wait for the entrypoint's KONG-READY line; return the host key it printed."""
    deadline = time.monotonic() + timeout
    wrapped = container.get_wrapped_container()
    while True:
        text = _container_log(container)
        if re.search(r"^KONG-READY", text, flags=re.MULTILINE):
            match = re.search(r"^KONG-HOSTKEY (\S+ \S+)", text, flags=re.MULTILINE)
            if match is None:
                raise ClusterError(f"{cname}: no host key in the container log")
            return match.group(1)
        wrapped.reload()
        failed = "kong-entrypoint: FAILED" in text
        if failed or wrapped.status in ("exited", "dead"):
            raise ClusterError(
                f"container {cname} failed to start (status {wrapped.status}); last log lines:\n"
                + "\n".join(text.splitlines()[-60:])
            )
        if time.monotonic() > deadline:
            raise ClusterError(
                f"container {cname} not ready after {timeout:.0f}s; last log lines:\n"
                + "\n".join(text.splitlines()[-60:])
            )
        time.sleep(0.25)


def stop_container(name_or_id: str) -> bool:
    """Remove a test cluster's container; False if there was none."""
    import docker
    from docker.errors import NotFound

    try:
        docker.from_env().containers.get(name_or_id).remove(force=True)
    except NotFound:
        return False
    return True


def list_containers() -> list[dict[str, str]]:
    """The test clusters' containers on this engine (running or not)."""
    import docker

    rows = []
    for container in docker.from_env().containers.list(all=True, filters={"label": LABEL}):
        labels = container.labels
        rows.append(
            {
                "name": labels.get(LABEL, ""),
                "kind": labels.get("kong.kind", ""),
                "container": container.name,
                "status": container.status,
                "image": ",".join(container.image.tags) if container.image else "",
                "state_dir": labels.get("kong.state_dir", ""),
            }
        )
    return rows
