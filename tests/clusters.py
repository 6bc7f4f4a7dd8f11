"""pytest plugin: real Slurm, HTCondor and sshd servers in containers.

Load it with ``pytest_plugins = ["tests.clusters"]`` (tests/conftest.py). Session
fixtures, each yielding a :class:`deploy.cluster.Cluster`:

- ``slurm_cluster``, ``slurm_cluster_b``: two independent one-node Slurm clusters
  with accounting (``sacct``), partition ``debug``, account ``kong``;
- ``htcondor_cluster``: an HTCondor personal pool;
- ``sshd_server``, ``sshd_jump_server``: plain OpenSSH servers (MaxSessions 10;
  the jump server allows TCP forwarding to 127.0.0.1, for ProxyJump tests);
- ``lsf_cluster``: an OpenSSH server with the LSF SIMULATOR (deploy/lsf-sim/: not
  IBM LSF, which cannot be installed here) on the login user's PATH;
- ``sge_cluster``: a one-host Son of Grid Engine 8.1.9 cluster with accounting
  (``qacct``), queue ``all.q``, parallel environment ``smp``;
- ``private_sshd_server`` (function scope): an sshd of one test alone, for
  tests that count or kill connections;
- ``cluster_factory``: ``cluster_factory.start(kind, name, max_sessions=..)`` for
  more clusters (stopped at the end of the session, or by ``.stop(cluster)``).

Images are built on first use (debootstrap, a few minutes cold) and the engine is
started if none answers. Each cluster listens on free ports of 127.0.0.1.

Environment variables (each a path to a kong profile YAML block, as printed by
``deploy/testcluster.py up``) point the fixtures at an already-running or real
cluster instead of starting one: ``KONG_TEST_SLURM``, ``KONG_TEST_SLURM_B``,
``KONG_TEST_HTCONDOR``, ``KONG_TEST_SSHD``, ``KONG_TEST_SSHD_JUMP``, ``KONG_TEST_LSF``,
``KONG_TEST_SGE``
(a real LSF cluster works there too). Such a
cluster has no container unless the file was written by ``testcluster.py up``:
the container-only helpers then raise, and the tests that need them skip.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")

from deploy.cluster import (
    Cluster,
    ClusterError,
    RunningCluster,
    cluster_from_profile_file,
    list_containers,
    start_cluster,
    stop_container,
)
from deploy.engine import EngineError

__all__ = ["Cluster", "ClusterFactory"]

ENV_VARS = {
    "slurm": "KONG_TEST_SLURM",
    "slurm-b": "KONG_TEST_SLURM_B",
    "htcondor": "KONG_TEST_HTCONDOR",
    "sshd": "KONG_TEST_SSHD",
    "sshd-jump": "KONG_TEST_SSHD_JUMP",
    "lsf-sim": "KONG_TEST_LSF",
    "sge": "KONG_TEST_SGE",
}
PID_LABEL = "kong.pytest-pid"
PIDNS_LABEL = "kong.pytest-pidns"


def _pid_namespace() -> str:
    """This process's PID namespace: PIDs of other namespaces cannot be checked."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return "unknown"


class ClusterFactory:
    """Starts test clusters for one pytest session and stops them all at its end."""

    def __init__(self, config: pytest.Config, state_dir: Path) -> None:
        self._config = config
        self._state_dir = state_dir
        self._running: list[RunningCluster] = []
        self.timings: list[str] = []
        self._cleaned = False

    def _say(self, message: str) -> None:
        """A line on the terminal even while pytest captures output."""
        capman: Any = self._config.pluginmanager.getplugin("capturemanager")
        reporter: Any = self._config.pluginmanager.getplugin("terminalreporter")
        if capman is not None and reporter is not None:
            with capman.global_and_fixture_disabled():
                reporter.write_line(f"[kong clusters] {message}")
        else:
            print(f"[kong clusters] {message}", flush=True)

    def _remove_stale(self) -> None:
        """Remove containers left by pytest sessions that died without tearing down."""
        if self._cleaned:
            return
        self._cleaned = True
        import docker

        client = docker.from_env()
        for container in client.containers.list(all=True, filters={"label": PID_LABEL}):
            if container.labels.get(PIDNS_LABEL) != _pid_namespace():
                continue  # started from another PID namespace: cannot tell if alive
            pid = int(container.labels.get(PID_LABEL, "0"))
            alive = pid > 0 and Path(f"/proc/{pid}").exists()
            if not alive:
                self._say(f"removing stale container {container.name}")
                stop_container(container.id)

    def start(
        self,
        kind: str,
        name: str,
        *,
        max_sessions: int = 10,
        cpus: int = 8,
        env: Mapping[str, str] | None = None,
    ) -> Cluster:
        """Start a cluster of ``kind`` (slurm, htcondor, sshd, ...) named ``name``;
        ``env`` adds environment variables of the container (see the entrypoints)."""
        try:
            from deploy.engine import ensure_engine

            ensure_engine(self._say)
            self._remove_stale()
            started = time.monotonic()
            running = start_cluster(
                kind,
                name,
                self._state_dir,
                container_name=f"kong-pytest-{os.getpid()}-{name}",
                labels={PID_LABEL: str(os.getpid()), PIDNS_LABEL: _pid_namespace()},
                max_sessions=max_sessions,
                cpus=cpus,
                env=env,
                log=self._say,
            )
        except (ClusterError, EngineError) as exc:
            pytest.fail(f"cannot start the {kind} test cluster {name}: {exc}", pytrace=False)
        self._running.append(running)
        self.timings.append(
            f"{name} ({kind}): image {running.image_seconds:.1f}s, "
            f"start {running.start_seconds:.1f}s, total {time.monotonic() - started:.1f}s"
        )
        return running.cluster

    def stop(self, cluster: Cluster) -> None:
        """Stop one cluster started by this factory (before the session ends)."""
        for running in list(self._running):
            if running.cluster is cluster:
                self._running.remove(running)
                running.stop()
                return
        raise ValueError(f"{cluster.name} was not started by this factory")

    def stop_all(self) -> None:
        while self._running:
            running = self._running.pop()
            try:
                running.stop()
            except Exception as exc:  # teardown must go on for the others
                self._say(f"could not remove {running.cluster.container_name}: {exc}")


_factory: ClusterFactory | None = None


@pytest.fixture(scope="session")
def cluster_factory(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ClusterFactory]:
    global _factory
    factory = ClusterFactory(request.config, tmp_path_factory.mktemp("clusters"))
    _factory = factory
    yield factory
    factory.stop_all()


def _cluster(factory: ClusterFactory, kind: str, name: str, **kw: Any) -> Cluster:
    env = ENV_VARS[name]
    path = os.environ.get(env)
    if path:
        try:
            return cluster_from_profile_file(Path(path), kind)
        except ClusterError as exc:
            pytest.fail(f"{env}={path}: {exc}", pytrace=False)
    return factory.start(kind, name, **kw)


@pytest.fixture(scope="session")
def slurm_cluster(cluster_factory: ClusterFactory) -> Cluster:
    """A one-node Slurm cluster with accounting (``$KONG_TEST_SLURM`` to use another)."""
    return _cluster(cluster_factory, "slurm", "slurm")


@pytest.fixture(scope="session")
def slurm_cluster_b(cluster_factory: ClusterFactory) -> Cluster:
    """A second, independent Slurm cluster (``$KONG_TEST_SLURM_B``)."""
    return _cluster(cluster_factory, "slurm", "slurm-b")


@pytest.fixture(scope="session")
def htcondor_cluster(cluster_factory: ClusterFactory) -> Cluster:
    """An HTCondor personal pool (``$KONG_TEST_HTCONDOR``)."""
    return _cluster(cluster_factory, "htcondor", "htcondor")


@pytest.fixture(scope="session")
def sshd_server(cluster_factory: ClusterFactory) -> Cluster:
    """A plain OpenSSH server, MaxSessions 10 (``$KONG_TEST_SSHD``)."""
    return _cluster(cluster_factory, "sshd", "sshd")


@pytest.fixture(scope="session")
def sshd_jump_server(cluster_factory: ClusterFactory) -> Cluster:
    """A second OpenSSH server to jump through (``$KONG_TEST_SSHD_JUMP``)."""
    return _cluster(cluster_factory, "sshd", "sshd-jump")


@pytest.fixture(scope="session")
def lsf_cluster(cluster_factory: ClusterFactory) -> Cluster:
    """An sshd with the LSF SIMULATOR's bsub/bjobs/bkill/bhist (``$KONG_TEST_LSF``)."""
    return _cluster(cluster_factory, "lsf-sim", "lsf-sim")


@pytest.fixture(scope="session")
def sge_cluster(cluster_factory: ClusterFactory) -> Cluster:
    """A one-host Son of Grid Engine 8.1.9 cluster with accounting: queue all.q,
    parallel environment smp (``$KONG_TEST_SGE``)."""
    return _cluster(cluster_factory, "sge", "sge")


_private_count = 0


@pytest.fixture
def private_sshd_server(cluster_factory: ClusterFactory) -> Iterator[Cluster]:
    """An sshd of this test alone (about 0.5 s to start), for tests that count or
    kill connections: the session's ``sshd_server`` may carry other tests' pooled
    connections (a kong agent's, say) at any moment."""
    global _private_count
    _private_count += 1
    cluster = cluster_factory.start("sshd", f"sshd-private-{_private_count}")
    yield cluster
    cluster_factory.stop(cluster)


def needs_container(cluster: Cluster) -> None:
    """Skip the calling test if ``cluster`` is external (no container to look into)."""
    if cluster.container_id is None:
        pytest.skip(f"{cluster.name} is an external cluster: no container to inspect")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _factory is not None and _factory.timings:
        terminalreporter.section("kong test clusters")
        for line in _factory.timings:
            terminalreporter.write_line(line)


def pytest_sessionfinish(session: pytest.Session) -> None:
    # Containers of this session that a crash left behind (normally none).
    if _factory is None:
        return
    try:
        leftovers = [
            row
            for row in list_containers()
            if row["container"].startswith(f"kong-pytest-{os.getpid()}-")
        ]
    except Exception:
        return
    for row in leftovers:
        stop_container(row["container"])
