"""The containerized test clusters themselves, driven with plain OpenSSH.

A job submitted over ``ssh`` must finish with its own non-zero exit code in the
scheduler's history (``sacct``, ``condor_history``) and leave its output behind.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from deploy.cluster import Cluster, cluster_from_profile_file
from tests.clusters import needs_container

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parent.parent


def ssh_ok(cluster: Cluster, command: str, timeout: float = 120) -> str:
    result = cluster.ssh(command, timeout=timeout)
    assert result.returncode == 0, (
        f"ssh {command!r} -> exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    )
    return result.stdout


def wait_for_output(cluster: Cluster, command: str, timeout: float = 60) -> str:
    """Run ``command`` over ssh until it prints something."""
    deadline = time.monotonic() + timeout
    while True:
        out = ssh_ok(cluster, command).strip()
        if out:
            return out
        assert time.monotonic() < deadline, f"no output from {command!r} after {timeout}s"
        time.sleep(0.5)


def submit_slurm_job(cluster: Cluster, tag: str, exit_code: int) -> str:
    script = (
        "#!/bin/bash\n"
        f"#SBATCH --job-name={tag}\n"
        f"#SBATCH --output=jobs/{tag}.out\n"
        f'echo "hello from {tag} on $SLURM_CLUSTER_NAME"\n'
        f"exit {exit_code}\n"
    )
    result = cluster.ssh(
        f"mkdir -p jobs && cat > jobs/{tag}.sh && sbatch --parsable jobs/{tag}.sh", input=script
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().split(";")[0]


def slurm_final(cluster: Cluster, job_id: str, name: str) -> list[str]:
    """JobID, JobName, State, ExitCode, Account, User from sacct once the job ended.

    Slurm 22.05 quirk: for a job that ends within a second, sacct can show the
    record for a moment with JobName "allocation" (the end reached slurmdbd before
    the start); wait for the record with the job's own name.
    """
    line = wait_for_output(
        cluster,
        f"sacct -n -X -P -j {job_id} -o JobID,JobName,State,ExitCode,Account,User"
        f" | grep -E '^{job_id}[|]{name}[|](COMPLETED|FAILED)[|]' || true",
    )
    return line.splitlines()[0].split("|")


def test_slurm_job_exit_code_in_sacct_and_output(slurm_cluster: Cluster) -> None:
    job_id = submit_slurm_job(slurm_cluster, "kongtest-exit3", 3)
    assert job_id.isdigit()
    fields = slurm_final(slurm_cluster, job_id, "kongtest-exit3")
    assert fields == [job_id, "kongtest-exit3", "FAILED", "3:0", "kong", "kong"]
    assert ssh_ok(slurm_cluster, "cat jobs/kongtest-exit3.out").startswith(
        "hello from kongtest-exit3 on "
    )
    # Finished jobs leave the live queue quickly (MinJobAge) but stay in sacct.
    deadline = time.monotonic() + 30
    while job_id in ssh_ok(slurm_cluster, "squeue -h -o %i"):
        assert time.monotonic() < deadline, "finished job still in squeue"
        time.sleep(0.5)


def test_slurm_accounting_as_root_in_container(slurm_cluster: Cluster) -> None:
    needs_container(slurm_cluster)
    code, out = slurm_cluster.exec(
        ["sacctmgr", "-n", "-P", "show", "assoc", "user=kong", "format=account,user"]
    )
    assert code == 0, out
    assert "kong|kong" in out.split()
    code, out = slurm_cluster.exec(["scontrol", "show", "config"])
    assert code == 0
    assert "MinJobAge               = 2 sec" in out


def test_slurm_many_short_jobs_run_concurrently(slurm_cluster: Cluster) -> None:
    out = ssh_ok(
        slurm_cluster,
        "sbatch --parsable --array=1-20 -o /dev/null -J kongtest-array --wrap 'sleep 1'",
    )
    array_id = out.strip().split(";")[0]
    # 20 one-second jobs on 8 CPUs x 4: one wave when the cluster is otherwise idle;
    # generous deadline because other tests may share the cluster.
    deadline = time.monotonic() + 120
    while True:
        states = ssh_ok(slurm_cluster, f"sacct -n -X -P -j {array_id} -o State").split()
        if len(states) == 20 and all(s == "COMPLETED" for s in states):
            break
        assert time.monotonic() < deadline, f"array not done: {states}"
        time.sleep(0.5)


def test_htcondor_job_exit_code_in_history_and_output(htcondor_cluster: Cluster) -> None:
    submit = (
        "executable = /bin/sh\n"
        "arguments = \"-c 'echo hello from condor; echo oops >&2; exit 4'\"\n"
        "output = job.out\n"
        "error = job.err\n"
        "log = job.log\n"
        '+KongToken = "kongtest-exit4"\n'
        "queue\n"
    )
    result = htcondor_cluster.ssh(
        "mkdir -p cjob && cd cjob && cat > job.sub && condor_submit -terse job.sub",
        input=submit,
    )
    assert result.returncode == 0, result.stderr
    cluster_id = result.stdout.strip().split(".")[0]
    assert cluster_id.isdigit()
    ssh_ok(htcondor_cluster, "condor_wait -wait 120 cjob/job.log")
    line = wait_for_output(
        htcondor_cluster,
        f"condor_history {cluster_id} -limit 1 -af ExitCode JobStatus KongToken Owner",
    )
    assert line.split() == ["4", "4", "kongtest-exit4", "kong"]
    assert ssh_ok(htcondor_cluster, "cat cjob/job.out") == "hello from condor\n"
    assert ssh_ok(htcondor_cluster, "cat cjob/job.err") == "oops\n"
    assert ssh_ok(htcondor_cluster, f"condor_q {cluster_id} -af ClusterId").strip() == ""


def test_two_slurm_clusters_side_by_side(slurm_cluster: Cluster, slurm_cluster_b: Cluster) -> None:
    assert slurm_cluster.port != slurm_cluster_b.port
    names = {
        ssh_ok(c, "scontrol show config | awk '/^ClusterName/ {print $3}'").strip()
        for c in (slurm_cluster, slurm_cluster_b)
    }
    assert len(names) == 2
    job_a = submit_slurm_job(slurm_cluster, "kongtest-side-a", 0)
    job_b = submit_slurm_job(slurm_cluster_b, "kongtest-side-b", 7)
    assert slurm_final(slurm_cluster, job_a, "kongtest-side-a")[1:4] == [
        "kongtest-side-a",
        "COMPLETED",
        "0:0",
    ]
    assert slurm_final(slurm_cluster_b, job_b, "kongtest-side-b")[1:4] == [
        "kongtest-side-b",
        "FAILED",
        "7:0",
    ]
    # Each cluster's accounting knows only its own jobs.
    assert "kongtest-side-b" not in ssh_ok(slurm_cluster, "sacct -n -X -P -o JobName")
    assert "kongtest-side-a" not in ssh_ok(slurm_cluster_b, "sacct -n -X -P -o JobName")


def wait_connections(cluster: Cluster, count: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while (now := cluster.ssh_connection_count()) != count:
        assert time.monotonic() < deadline, f"{now} ssh connections, expected {count}"
        time.sleep(0.05)


def test_sshd_connections_counted_and_killed(private_sshd_server: Cluster) -> None:
    sshd_server = private_sshd_server
    assert ssh_ok(sshd_server, "echo ok") == "ok\n"
    logins = sshd_server.accepted_logins()
    assert logins >= 1
    wait_connections(sshd_server, 0)  # sshd ends a connection just after its client
    proc = subprocess.Popen(
        sshd_server.ssh_command("echo started; sleep 60"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "started\n"
        assert sshd_server.ssh_connection_count() == 1
        deadline = time.monotonic() + 10
        while sshd_server.accepted_logins() != logins + 1:  # the log may lag a little
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert sshd_server.kill_ssh_connections() == 1
        assert proc.wait(timeout=10) == 255  # ssh: connection lost
    finally:
        proc.kill()
        proc.wait()
    wait_connections(sshd_server, 0)
    code, out = sshd_server.exec("tr '\\0' ' ' < /proc/$(cat /run/kong-sshd.pid)/cmdline")
    assert code == 0
    assert "MaxSessions=10" in out


def test_ssh_through_jump_host(sshd_server: Cluster, sshd_jump_server: Cluster) -> None:
    jump = " ".join(
        [
            "ssh",
            *sshd_jump_server.ssh_options(),
            "-W",
            "%h:%p",
            f"{sshd_jump_server.user}@{sshd_jump_server.host}",
        ]
    )
    cmd = [
        "ssh",
        *sshd_server.ssh_options(),
        "-o",
        f"ProxyCommand={jump}",
        f"{sshd_server.user}@{sshd_server.host}",
        "echo via jump",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "via jump\n"


def test_profile_file_points_fixtures_at_a_running_cluster(slurm_cluster: Cluster) -> None:
    profile = slurm_cluster.profile()
    assert profile["driver"] == "slurm"
    assert profile["host"] == "127.0.0.1"
    assert profile["partition"] == "debug"
    if slurm_cluster.container_id is None:
        return
    path = slurm_cluster.identity_file.parent / "profile.yml"
    assert yaml.safe_load(path.read_text()) == {slurm_cluster.name: profile}
    again = cluster_from_profile_file(path, "slurm")
    assert again == slurm_cluster


def test_testcluster_status_lists_the_session_clusters(slurm_cluster: Cluster) -> None:
    needs_container(slurm_cluster)
    result = subprocess.run(
        [sys.executable, str(REPO / "deploy" / "testcluster.py"), "status"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert str(slurm_cluster.container_name) in result.stdout


@pytest.mark.parametrize("image", ["slurm", "htcondor", "sshd", "debian-python", "sge"])
def test_dockerfile_installs_the_same_packages(image: str) -> None:
    """deploy/IMAGE/Dockerfile and the offline build (SPECS) must not drift apart."""
    from deploy.images import SPECS

    text = (REPO / "deploy" / image / "Dockerfile").read_text()
    assert f"FROM debian:{SPECS[image].suite}\n" in text
    install = text.split("--no-install-recommends", 1)[1].split("&&", 1)[0]
    assert set(install.replace("\\", " ").split()) == set(SPECS[image].packages)
