#!/usr/bin/env python3
"""Benchmark: 100 consecutive `kong ls --refresh` processes on a remote profile, with
the kong agent and without it (`agent: false`), in one run.

For each mode it prints the SSH logins the cluster's sshd accepted (counted on
the server, from sshd's log) and the wall time per invocation. Each invocation
is a separate process of the installed `kong` entry point (never a pyenv shim).
The cluster is a containerized Slurm (deploy/) started here, or the one a
profile file points at (`--profile-file`, as written by deploy/testcluster.py;
it needs its container to count logins). A few jobs are kept running so every
refresh really asks the scheduler.

    python benchmarks/bench_agent.py [--runs 100] [--profile-file PATH] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def kong_argv() -> list[str]:
    script = Path(sys.executable).parent / "kong"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from kong.cli import main; sys.exit(main())"]


def make_home(base: Path, name: str, profile: dict[str, Any], agent: bool) -> dict[str, str]:
    import yaml

    home = base / name
    home.mkdir()
    config = {"profiles": {"c": profile}, "default_profile": "c", "agent": agent}
    (home / "config.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    env = {**os.environ, "KONG_HOME": str(home)}
    env.pop("KONG_AGENT", None)
    env.pop("KONG_CONFIG_DIR", None)
    return env


def kong(env: dict[str, str], *args: str) -> float:
    start = time.perf_counter()
    proc = subprocess.run([*kong_argv(), *args], env=env, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, check=False)
    took = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"kong {' '.join(args)} failed: {proc.stderr.strip()[-500:]}")
    return took


def measure(env: dict[str, str], cluster: Any, runs: int) -> dict[str, Any]:
    # Jobs that stay queued or running, so that every refresh queries Slurm.
    kong(env, "mkdir", "-p", "/b")
    for _ in range(3):
        kong(env, "create-job", "-f", "/b", "--submit", "--", "sleep 3600")
    kong(env, "agent", "stop")
    time.sleep(0.5)
    logins = cluster.accepted_logins()
    times = [kong(env, "ls", "--refresh", "/b") for _ in range(runs)]
    opened = cluster.accepted_logins() - logins
    kong(env, "kill", "-y", "/b")
    kong(env, "agent", "stop")
    return {
        "runs": runs,
        "connections_opened": opened,
        "mean_s": statistics.mean(times),
        "median_s": statistics.median(times),
        "first_s": times[0],
        "p90_s": sorted(times)[int(len(times) * 0.9) - 1],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--profile-file", type=Path,
                        help="a Slurm profile file from deploy/testcluster.py up")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")
    from deploy.cluster import cluster_from_profile_file, start_cluster

    base = Path(tempfile.mkdtemp(prefix="kong-bench-agent-"))
    running = None
    if args.profile_file:
        cluster = cluster_from_profile_file(args.profile_file, "slurm")
    else:
        from deploy.engine import ensure_engine

        ensure_engine(lambda m: print(m, file=sys.stderr))
        running = start_cluster("slurm", f"bench-agent-{os.getpid()}", base / "cluster",
                                log=lambda m: print(m, file=sys.stderr))
        cluster = running.cluster
    try:
        profile = {**cluster.profile(), "poll_interval": 1}
        results = {
            "agent": measure(make_home(base, "with-agent", profile, True), cluster, args.runs),
            "no agent": measure(make_home(base, "no-agent", profile, False), cluster,
                                args.runs),
        }
    finally:
        if running is not None:
            running.stop()
    print(f"{args.runs} consecutive `kong ls --refresh` processes on a remote Slurm profile "
          f"({' '.join(kong_argv())}):")
    print(f"{'':10} {'connections opened':>18} {'mean':>8} {'median':>8} {'p90':>8} "
          f"{'first':>8}")
    for name, r in results.items():
        print(f"{name:10} {r['connections_opened']:>18} {r['mean_s'] * 1000:>6.0f}ms "
              f"{r['median_s'] * 1000:>6.0f}ms {r['p90_s'] * 1000:>6.0f}ms "
              f"{r['first_s'] * 1000:>6.0f}ms")
    a, n = results["agent"], results["no agent"]
    print(f"agent: {n['connections_opened'] / max(a['connections_opened'], 1):.0f}x fewer "
          f"logins, {(n['median_s'] - a['median_s']) * 1000:+.0f} ms per invocation "
          f"saved (median)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
