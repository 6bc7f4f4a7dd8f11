#!/usr/bin/env python3
"""Benchmark: scheduler queries per minute for 1, 5 and 20 concurrent `kong wait`
processes on 1,000 jobs, with the kong agent (one shared status view per cluster)
and without it (`agent: false`: each process asks on its own), in one run.

The queries are counted on the cluster: wrapper scripts placed before the real
squeue and sacct in PATH inside the Slurm container log each execution (the
processes are never asked what they did). The jobs are held (`#SBATCH --hold`),
so they stay PENDING and every wait keeps polling for the whole window. The
profile uses kong's defaults (5 s floor, 120 s cap). Printed beside each figure:
the peer, the same processes without the agent, and the floor, one process.
Not part of CI (it runs for minutes: about 6 x (--seconds + start-up)).

    python benchmarks/bench_polling.py [--jobs 1000] [--seconds 60] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.bench_agent import kong, kong_argv, make_home  # noqa: E402

CALLS = "/tmp/kong-bench-scheduler-calls.log"
WRAPPER = f"""#!/bin/sh
printf '%s %s\\n' "$(date +%s.%N)" "$(basename "$0")" >> {CALLS}
exec /usr/bin/"$(basename "$0")" "$@"
"""
PROCESSES = (1, 5, 20)


def install_counters(cluster: Any) -> None:
    for name in ("squeue", "sacct"):
        code, out = cluster.exec(f"printf '%s' {shlex.quote(WRAPPER)} > /usr/local/bin/{name}"
                                 f" && chmod 755 /usr/local/bin/{name}")
        if code:
            raise RuntimeError(out)
    cluster.exec(f": > {CALLS}; chmod 666 {CALLS}")


def calls_between(cluster: Any, start: float, end: float) -> dict[str, int]:
    _, out = cluster.exec(f"cat {CALLS}")
    counts = {"squeue": 0, "sacct": 0}
    for line in out.splitlines():
        stamp, _, name = line.partition(" ")
        if name in counts and start <= float(stamp) < end:
            counts[name] += 1
    return counts


def measure(env: dict[str, str], cluster: Any, processes: int, seconds: float) -> dict[str, Any]:
    kong(env, "agent", "stop")
    procs = [subprocess.Popen([*kong_argv(), "wait", "-r", "/b", "-q", "-t", "3600"], env=env,
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
             for _ in range(processes)]
    # Start-up (20 Python processes on a small machine) is not counted: the window
    # opens after a settling time long enough for every process to be polling.
    time.sleep(10 + processes * 1.5)
    start = time.time()
    time.sleep(seconds)
    end = time.time()
    # A process that died (sshd refusing a burst of logins without the agent, say)
    # polled for less than the window: reported, not hidden.
    alive = sum(proc.poll() is None for proc in procs)
    for proc in procs:
        proc.terminate()
    for proc in procs:
        proc.communicate(timeout=60)
    counts = calls_between(cluster, start, end)
    per_minute = {k: v * 60.0 / (end - start) for k, v in counts.items()}
    return {"processes": processes, "alive": alive, "seconds": end - start, **counts,
            "squeue_per_min": per_minute["squeue"], "sacct_per_min": per_minute["sacct"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")
    from deploy.cluster import start_cluster
    from deploy.engine import ensure_engine

    base = Path(tempfile.mkdtemp(prefix="kong-bench-polling-"))
    ensure_engine(lambda m: print(m, file=sys.stderr))
    running = start_cluster("slurm", f"bench-polling-{os.getpid()}", base / "cluster",
                            log=lambda m: print(m, file=sys.stderr))
    cluster = running.cluster
    results: dict[str, list[dict[str, Any]]] = {}
    try:
        install_counters(cluster)
        profile = {**cluster.profile(), "extra": ["#SBATCH --hold"]}
        for mode, agent in (("agent", True), ("no agent", False)):
            env = make_home(base, mode.replace(" ", "-"), profile, agent)
            kong(env, "mkdir", "-p", "/b")
            script = ("import kong; s = kong.get_instance()\n"
                      f"for _ in range({args.jobs}): s.create_job(command='true', folder='/b')\n"
                      "s.submit_job('/b')\n")
            subprocess.run([sys.executable, "-c", script], env=env, check=True)
            results[mode] = [measure(env, cluster, n, args.seconds) for n in PROCESSES]
            kong(env, "kill", "-y", "-r", "/b")
            kong(env, "agent", "stop")
    finally:
        running.stop()
    print(f"squeue (and sacct) runs per minute on the cluster, {args.jobs} held jobs, "
          f"N concurrent `kong wait` ({' '.join(kong_argv())}), {args.seconds:.0f} s each:")
    print(f"{'processes':>9} {'agent':>14} {'no agent (peer)':>16} {'ratio':>7}  alive")
    for a, n in zip(results["agent"], results["no agent"], strict=True):
        print(f"{a['processes']:>9} {a['squeue_per_min']:>8.1f} ({a['sacct_per_min']:.0f})"
              f" {n['squeue_per_min']:>10.1f} ({n['sacct_per_min']:.0f})"
              f" {n['squeue_per_min'] / max(a['squeue_per_min'], 0.1):>6.1f}x"
              f"  {a['alive']}/{n['alive']}")
    floor = results["agent"][0]["squeue_per_min"]
    print(f"floor (one process with the agent): {floor:.1f}/min; with "
          f"{PROCESSES[-1]} processes: {results['agent'][-1]['squeue_per_min']:.1f}/min")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
