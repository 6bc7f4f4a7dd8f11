"""kong against the cluster's own cost: bulk submit, refresh, kill, tail, ls.

    python -m benchmarks.run                      # everything, at 0 and 25 ms
    python -m benchmarks.run --latency 25 --jobs 200 --only submit,refresh

Starts containerized Slurm clusters (deploy/), puts a latency proxy
(benchmarks/latency_proxy.py) between kong and each sshd, and runs every
benchmark in a fresh process (so peak memory is its own). Each result is set
against a floor measured in the same run: the scheduler commands run inside the
container directly, plus one network round trip. Machines here are noisy: the
ratios are the result, not the seconds. Prints a table and writes JSON.

Benchmarks (N = --jobs, default 1000):
  submit         bulk submit of N jobs through kong (jobs are held, so none run)
  submit-naive   the same, one `ssh host sbatch` per job (OpenSSH, a new
                 connection each, as shell scripts do); measured on a sample,
                 scaled to N
  refresh        status refresh of N jobs; refresh-10k of 10,000
  refresh-2      N jobs on each of two clusters, one refresh for both
  kill           kill of N jobs
  tail           `tail` of a 1 GB log, then again after it grew by 1 MB
  ls, repl       ls of 100,000 jobs and REPL start-up (no cluster)
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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

#: Each benchmark process keeps its own connections (benchmarks/bench_agent.py
#: measures the shared agent); _warm opens them before the timed part.
CHILD_ENV = {**os.environ, "KONG_AGENT": "0"}

HELD = ["#SBATCH --hold"]  # held jobs never run: the benchmark measures kong, not the node


# -- child side: one benchmark in a fresh process -------------------------------------


def _state(home: str, config: dict[str, Any]) -> Any:
    os.environ["KONG_HOME"] = home
    from kong import db
    from kong.config import Config
    from kong.model.folder import Folder
    from kong.state import State

    cfg = Config(data=config)
    db.init(cfg.database_url)
    return State(cfg, Folder.get_root())


def _transports(state: Any) -> list[Any]:
    return [state.driver(name).transport for name in state.config.profiles]


def _counters(state: Any) -> dict[str, int]:
    total = {"round_trips": 0, "bytes_sent": 0, "bytes_received": 0}
    seen: set[int] = set()
    for transport in _transports(state):
        if id(transport) in seen:
            continue
        seen.add(id(transport))
        snap = transport.stats.snapshot()
        for key in total:
            total[key] += snap[key]
    return total


def _warm(state: Any) -> None:
    """Open the connections and learn the remote home first: a user's second command
    finds them open (and with the agent, so does the first); and what a driver asks
    once of a cluster and keeps in the data dir (Slurm's MaxArraySize, LSF's
    MAX_JOB_ARRAY_SIZE): a profile's first submit costs one round trip more."""
    for name in state.config.profiles:
        driver = state.driver(name)
        driver.transport.run(["true"])
        _ = driver.base_dir
        driver.prepare_submit([])


def _timed(state: Any, action: Callable[[], Any]) -> dict[str, Any]:
    before = _counters(state)
    start = time.perf_counter()
    action()
    seconds = time.perf_counter() - start
    after = _counters(state)
    return {"seconds": seconds, **{k: after[k] - before[k] for k in after}}


def child(name: str, ctx: dict[str, Any]) -> dict[str, Any]:
    state = _state(ctx["home"], ctx["config"])
    folder = ctx.get("folder", "/bench")
    n = int(ctx.get("jobs", 1000))
    if name == "create-submit":  # setup for refresh-10k and refresh-2: not timed
        _warm(state)
        state.mkdir(folder, exist_ok=True, create_parent=True)
        with state.pushd(folder):
            for profile in ctx["profiles"]:
                for _ in range(n):
                    state.create_job(command="true", profile=profile, extra=HELD)
        state.submit_job(folder)
        return {"seconds": 0.0}
    if name == "submit":
        state.mkdir(folder, exist_ok=True, create_parent=True)
        # how the scheduler holds a job (Slurm's --hold unless the caller says)
        options = ctx.get("job_options", {"extra": HELD})
        with state.pushd(folder):
            for _ in range(n):
                state.create_job(command="true", **options)
        _warm(state)
        result = _timed(state, lambda: state.submit_job(folder))
        result["base_dir"] = state.default_driver.base_dir
        return result
    if name in ("refresh", "refresh-10k", "refresh-2"):
        jobs = state.get_jobs(folder)
        _warm(state)
        result = _timed(state, lambda: state.refresh_jobs(jobs))
        statuses = {j.status.name for j in jobs}
        if statuses != {"SUBMITTED"}:  # held jobs must all be seen as queued
            raise RuntimeError(f"refresh saw statuses {sorted(statuses)}")
        return result
    if name == "kill":
        _warm(state)
        result = _timed(state, lambda: state.kill_job(folder))
        if result["round_trips"] == 0:
            raise RuntimeError("kill found no live jobs to kill")
        return result
    if name == "tail":
        return _tail(state, ctx)
    raise SystemExit(f"unknown benchmark {name}")


def _tail(state: Any, ctx: dict[str, Any]) -> dict[str, Any]:
    from kong.remote.logsync import LogCache

    driver = state.default_driver
    _warm(state)
    cache = LogCache(Path(ctx["home"]) / "logcache")
    path = ctx["log_path"]
    first = _timed(state, lambda: cache.tail(driver.transport, path, "bench/tail", 20))
    subprocess.run(ctx["grow_cmd"], check=True, capture_output=True)
    second = _timed(state, lambda: cache.tail(driver.transport, path, "bench/tail", 20))
    return {**first, "regrow_seconds": second["seconds"],
            "regrow_bytes_received": second["bytes_received"],
            "regrow_round_trips": second["round_trips"]}


# -- parent side ----------------------------------------------------------------------


@dataclass
class Row:
    name: str
    latency_ms: float
    n: int
    seconds: float
    round_trips: int | None = None
    bytes_moved: int | None = None
    peak_mb: float | None = None
    floor_seconds: float | None = None
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        if self.floor_seconds:
            return self.seconds / self.floor_seconds
        return None


def run_child(name: str, ctx: dict[str, Any]) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
        json.dump(ctx, fh)
    code = (
        "import json, resource, sys; sys.path.insert(0, sys.argv[3]);"
        "from benchmarks.run import child;"
        "r = child(sys.argv[1], json.load(open(sys.argv[2])));"
        "r['peak_kb'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss;"
        "print('RESULT ' + json.dumps(r))"
    )
    proc = subprocess.run([sys.executable, "-c", code, name, fh.name, str(ROOT)],
                          capture_output=True, text=True, check=False, env=CHILD_ENV)
    os.unlink(fh.name)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            result: dict[str, Any] = json.loads(line[7:])
            return result
    raise RuntimeError(f"benchmark {name} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")


class Setup:
    """The clusters, their proxies and helpers to measure floors inside them."""

    def __init__(self, state_dir: Path, clusters: int, kind: str = "slurm") -> None:
        from deploy.cluster import start_cluster

        self.running = []
        for i in range(clusters):
            name = f"bench-{os.getpid()}-{i}"
            self.running.append(start_cluster(kind, name, state_dir / name,
                                              log=lambda m: print(m, file=sys.stderr)))
        self.clusters = [r.cluster for r in self.running]
        self.proxies: dict[tuple[int, float], Any] = {}

    def stop(self) -> None:
        for proxy in self.proxies.values():
            proxy.stop()
        for running in self.running:
            running.stop()

    def profile(self, index: int, latency_ms: float, state_dir: Path) -> dict[str, Any]:
        """A kong profile that reaches cluster ``index`` through a proxy adding latency."""
        from benchmarks.latency_proxy import LatencyProxy

        cluster = self.clusters[index]
        key = (index, latency_ms)
        if key not in self.proxies:
            proxy = LatencyProxy(cluster.host, cluster.port, latency_ms)
            proxy.start()
            self.proxies[key] = proxy
        port = self.proxies[key].port
        # The container's host key, filed under the proxy's port.
        known = state_dir / f"known_hosts-{index}-{port}"
        key_line = Path(cluster.known_hosts).read_text().split(None, 1)[1]
        known.write_text(f"[127.0.0.1]:{port} {key_line}")
        block = cluster.profile()
        block.update(port=port, known_hosts=str(known), poll_interval=0.5)
        return block

    def inside(self, index: int, script: str) -> float:
        """Seconds a shell script takes inside container ``index``, as user kong."""
        timed = f'start=$(date +%s.%N); {script}\nend=$(date +%s.%N); echo "T $start $end"'
        code, out = self.clusters[index].exec(["su", "kong", "-c", timed])
        for line in out.splitlines():
            if line.startswith("T "):
                _, start, end = line.split()
                return float(end) - float(start)
        raise RuntimeError(f"inside-container timing failed ({code}): {out[-500:]}")


def round_trip(profile: dict[str, Any], home: str) -> float:
    """Seconds of one round trip (a `true` over an open connection) at a profile's latency."""
    code = (
        "import sys, time, os; sys.path.insert(0, sys.argv[2]);"
        "os.environ['KONG_HOME'] = sys.argv[3];"
        "import json; from kong.config import Config; from kong.remote import transport_for;"
        "cfg = Config(data={'profiles': {'c': json.loads(sys.argv[1])}});"
        "t = transport_for(cfg.profile('c')); t.run(['true']);"
        "s = time.perf_counter(); [t.run(['true']) for _ in range(5)];"
        "print('RTT', (time.perf_counter() - s) / 5)"
    )
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(profile), str(ROOT), home],
                          capture_output=True, text=True, check=True, env=CHILD_ENV)
    return float(proc.stdout.split("RTT")[1])


def floor_submit(setup: Setup, base_dir: str) -> float:
    """The same sbatch calls kong made (its very job scripts), run inside the container.

    A different job name keeps these apart from kong's jobs; nothing else differs."""
    script = (
        f"i=0; for f in {shlex.quote(base_dir)}/*/job.sh; do i=$((i+1)); "
        "sbatch --parsable --job-name=floor-$i \"$f\" > /dev/null; done"
    )
    return setup.inside(0, script)


def floor_kill(setup: Setup) -> float:
    """scancel of the jobs floor_submit left (one command, all ids)."""
    return setup.inside(0, "squeue -u kong -h -o '%i %j' | awk '$2 ~ /^floor-/ {print $1}' "
                           "| xargs -r scancel")


def _cancel_named(cluster: Any, prefix: str) -> None:
    """Cancel the jobs whose names start with ``prefix`` (never kong's own)."""
    cluster.exec(["sh", "-c", f"squeue -u kong -h -o '%i %j' | awk '$2 ~ /^{prefix}/ "
                              "{print $1}' | xargs -r scancel"])


def floor_query(setup: Setup) -> float:
    return setup.inside(0, "squeue -u kong -h -o '%i %T' > /dev/null; "
                           "sacct -X -n -P -u kong --format=JobID,State,ExitCode > /dev/null")


def naive_submit(cluster: Any, profile: dict[str, Any], sample: int) -> float:
    """Seconds per job of `ssh host sbatch script`, a new OpenSSH connection each."""
    opts = ["-i", profile["identity_file"], "-o", f"UserKnownHostsFile={profile['known_hosts']}",
            "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-p", str(profile["port"])]
    target = f"{profile['user']}@{profile['host']}"
    subprocess.run(["ssh", *opts, target, "printf '#!/bin/sh\\ntrue\\n' > naive.sh"], check=True,
                   capture_output=True)
    start = time.perf_counter()
    for i in range(sample):
        subprocess.run(["ssh", *opts, target, shlex.join(
            ["sbatch", "--parsable", "--hold", f"--job-name=naive-{i}", "--output=/dev/null",
             "naive.sh"])], check=True, capture_output=True)
    per_job = (time.perf_counter() - start) / sample
    _cancel_named(cluster, "naive-")
    return per_job


def row(name: str, latency: float, n: int, r: dict[str, Any], floor: float | None = None,
        note: str = "") -> Row:
    return Row(name, latency, n, r["seconds"], r.get("round_trips"),
               (r.get("bytes_sent") or 0) + (r.get("bytes_received") or 0),
               r.get("peak_kb", 0) / 1024 or None, floor, note)


def render(rows: list[Row]) -> str:
    header = ["benchmark", "latency", "N", "kong s", "floor s", "ratio", "round trips",
              "bytes", "peak MB", "note"]
    table = [header]
    for r in rows:
        table.append([
            r.name, f"{r.latency_ms:g} ms", str(r.n), f"{r.seconds:.3f}",
            "-" if r.floor_seconds is None else f"{r.floor_seconds:.3f}",
            "-" if r.ratio is None else f"{r.ratio:.2f}x",
            "-" if r.round_trips is None else str(r.round_trips),
            "-" if r.bytes_moved is None else f"{r.bytes_moved:,}",
            "-" if r.peak_mb is None else f"{r.peak_mb:.0f}",
            r.note,
        ])
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) + " |"
             for line in table]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[1:]))
    parser.add_argument("--latency", default="0,25", help="ms each way, comma-separated")
    parser.add_argument("--jobs", type=int, default=1000, help="N for submit/refresh/kill")
    parser.add_argument("--big", type=int, default=10000, help="N for refresh-10k")
    parser.add_argument("--naive-sample", type=int, default=30,
                        help="jobs actually submitted the naive way (scaled to N)")
    parser.add_argument("--only", default="", help="comma-separated subset of benchmarks")
    parser.add_argument("--json", default="benchmarks/out/results.json", help="JSON output")
    args = parser.parse_args()
    only = set(filter(None, args.only.split(",")))

    def wanted(name: str) -> bool:
        return not only or name in only

    latencies = [float(x) for x in args.latency.split(",")]
    rows: list[Row] = []
    work = Path(tempfile.mkdtemp(prefix="kong-bench-"))
    need_clusters = 2 if wanted("refresh-2") else 1
    cluster_benches = {"submit", "submit-naive", "refresh", "refresh-10k", "refresh-2", "kill",
                       "tail"}
    setup = Setup(work, need_clusters) if any(wanted(b) for b in cluster_benches) else None
    n = args.jobs
    try:
        if setup is not None:
            for latency in latencies:
                home = str(work / f"home-{latency:g}")
                p0 = setup.profile(0, latency, work)
                config = {"default_profile": "a", "profiles": {"a": p0}}
                rtt = round_trip(p0, home)
                print(f"[bench] latency {latency:g} ms: round trip {rtt * 1000:.1f} ms",
                      file=sys.stderr)
                ctx = {"home": home, "config": config, "jobs": n, "folder": "/bench"}
                if wanted("submit"):
                    # Floors are measured right beside kong's run (the load on these
                    # machines changes from minute to minute), on kong's own scripts.
                    r = run_child("submit", ctx)
                    floor_sub = floor_submit(setup, r["base_dir"])
                    floor_k = floor_kill(setup)
                    rows.append(row("submit", latency, n, r, floor_sub + rtt,
                                    "floor: kong's sbatch calls in the container + 1 RTT"))
                if wanted("submit-naive"):
                    per_job = naive_submit(setup.clusters[0], p0, args.naive_sample)
                    rows.append(Row("submit-naive", latency, n, per_job * n,
                                    note=f"ssh per job; {args.naive_sample} measured, x{n}"))
                if wanted("refresh") and wanted("submit"):
                    r = run_child("refresh", ctx)
                    rows.append(row("refresh", latency, n, r, floor_query(setup) + rtt,
                                    "floor: squeue + sacct in the container + 1 RTT"))
                if wanted("kill") and wanted("submit"):
                    r = run_child("kill", ctx)
                    rows.append(row("kill", latency, n, r, floor_k + rtt,
                                    "floor: one scancel in the container + 1 RTT"))
                if wanted("refresh-10k"):
                    big = {**ctx, "jobs": args.big, "folder": "/big", "profiles": ["a"]}
                    run_child("create-submit", big)
                    r = run_child("refresh-10k", big)
                    rows.append(row("refresh", latency, args.big, r, floor_query(setup) + rtt,
                                    "floor: squeue + sacct in the container + 1 RTT"))
                    setup.clusters[0].exec(["sh", "-c", "scancel -u kong"])
                if wanted("refresh-2") and len(setup.clusters) > 1:
                    p1 = setup.profile(1, latency, work)
                    two = {"home": home + "-two", "jobs": n, "folder": "/two",
                           "profiles": ["a", "b"],
                           "config": {"default_profile": "a", "profiles": {"a": p0, "b": p1}}}
                    run_child("create-submit", two)
                    r = run_child("refresh-2", two)
                    rows.append(row("refresh (2 clusters)", latency, 2 * n, r,
                                    floor_query(setup) + rtt,
                                    "concurrent; floor: one cluster's query + 1 RTT"))
                    for c in setup.clusters:
                        c.exec(["sh", "-c", "scancel -u kong"])
                if wanted("tail"):
                    log = "/home/kong/big.log"
                    setup.clusters[0].exec(["su", "kong", "-c",
                        f"yes 'a line of a log that grows and grows' | head -c 1073741824 > {log}"])
                    grow = [c for c in setup.clusters[0].ssh_command(
                        f"yes 'one more line' | head -c 1048576 >> {log}")]
                    r = run_child("tail", {**ctx, "home": home + "-tail", "log_path": log,
                                           "grow_cmd": grow})
                    rows.append(row("tail 1 GB log", latency, 1, r,
                                    note=f"{r['bytes_received']:,} bytes in"))
                    rows.append(Row("re-tail after +1 MB", latency, 1, r["regrow_seconds"],
                                    r["regrow_round_trips"], r["regrow_bytes_received"],
                                    note="bytes in"))
                    setup.clusters[0].exec(["rm", "-f", log])
        local = local_benchmarks(wanted) if (wanted("ls") or wanted("repl")) else ""
    finally:
        if setup is not None:
            setup.stop()
    print(render(rows))
    if local:
        print("\n" + local)
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"rows": [{**r.__dict__, "ratio": r.ratio} for r in rows],
                               "local": local}, indent=2))
    print(f"\nwritten {out}; command: python -m benchmarks.run {' '.join(sys.argv[1:])}")


def local_benchmarks(wanted: Callable[[str], bool]) -> str:
    """ls of 100,000 jobs and REPL start-up: the output of the scripts that own them."""
    parts = []
    for name, script in (("ls", "bench_ls.py"), ("repl", "bench_repl.py"),
                         ("report", "bench_report.py")):
        path = ROOT / "benchmarks" / script
        if wanted(name) and path.exists():
            proc = subprocess.run([sys.executable, str(path)], capture_output=True, text=True,
                                  check=False)
            parts.append(f"$ python benchmarks/{script}\n{proc.stdout}{proc.stderr[-2000:]}")
    return "\n".join(parts)


if __name__ == "__main__":
    main()
