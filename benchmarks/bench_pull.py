#!/usr/bin/env python3
"""Benchmark: ``kong pull`` against rsync, on the same data in the same run (issue 18).

Starts the sshd test container (deploy/sshd, which has rsync) and a kong whose
profile runs the local driver there, writes job results on the host, then pulls
them to a fresh local dir with, in turn:

* kong: ``State.pull`` of all jobs (one listing + one stream per cluster), then a
  re-pull with nothing changed;
* rsync per job: ``rsync -a -e ssh host:JOBDIR/ DEST/ID/`` once per job, a new OpenSSH
  connection each (what a user's shell loop does); measured on ``--sample`` jobs and
  scaled to all of them;
* rsync whole tree: one ``rsync -a`` of the remote dir holding every job's dir.

kong's pull and the whole-tree rsync run twice each, in turn, and the faster run of
each is the figure (both runs are in the JSON). Each timed run starts after a
``sync``, so it does not pay for writing back what the one before it wrote.

Data sets: (a) ``--jobs`` jobs x ``--files`` files of ``--file-kb`` KB (default
1,000 x 10 x 10 KB), (b) ``--big-files`` files of ``--big-mb`` MB (default 5 x 500).
At 0 ms kong and rsync connect straight to the container; at other latencies both go
through ``benchmarks/latency_proxy.py`` in a process of its own (a delay each way).
The machine is noisy: the ratios are the result, not the seconds.

    python benchmarks/bench_pull.py [--latency 0,25] [--sets a,b] [--jobs 1000] [--big-mb 500]
                                    [--scratch DIR] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# Writes the results on the host: argv = root, jobs, files per job, bytes per file.
_MAKE_DATA = """
import os, sys
root, jobs, files, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
for j in range(1, jobs + 1):
    d = os.path.join(root, str(j), "output")
    os.makedirs(d, exist_ok=True)
    for f in range(files):
        with open(os.path.join(d, "f%03d.dat" % f), "wb") as fh:
            left = size
            while left:
                n = min(left, 8 << 20)
                fh.write(os.urandom(n))
                left -= n
"""


class Proxy:
    """benchmarks/latency_proxy.py in a process of its own (it must not share kong's GIL)."""

    def __init__(self, host: str, port: int, delay_ms: float) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "benchmarks" / "latency_proxy.py"),
             "--target", f"{host}:{port}", "--delay-ms", str(delay_ms)],
            stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        self.port = int(line.split()[0].rpartition(":")[2])

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def ssh_command(cluster: Any, port: int) -> list[str]:
    # The container's host key is filed under its own port; the proxy has another.
    return ["ssh", "-p", str(port), "-o", f"HostKeyAlias=[{cluster.host}]:{cluster.port}",
            *cluster.ssh_options()]


def rsync(cluster: Any, port: int, remote_dir: str, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run(["rsync", "-a", "-e", " ".join(ssh_command(cluster, port)),
                    f"{cluster.user}@{cluster.host}:{remote_dir}/", f"{dest}/"],
                   check=True, stdin=subprocess.DEVNULL)


def kong_state(base: Path, cluster: Any, port: int, remote_dir: str, name: str) -> Any:
    from kong import db
    from kong.config import Config
    from kong.model.folder import Folder
    from kong.state import State

    known = base / f"known_hosts-{port}"
    key_line = Path(cluster.known_hosts).read_text().split(None, 1)[1]
    known.write_text(f"[{cluster.host}]:{port} {key_line}")
    block = {**cluster.profile(), "driver": "local", "port": port,
             "known_hosts": str(known), "remote_dir": remote_dir}
    config = Config(data={"default_profile": name, "profiles": {name: block}})
    db.init(config.database_url)
    return State(config, Folder.get_root())


def measure(state: Any, cluster: Any, port: int, base_dir: str, jobs: list[Any],
            sample: int, scratch: Path, with_loop: bool) -> dict[str, Any]:
    stats = state.default_driver.transport.stats
    state.default_driver.base_dir  # noqa: B018 - learn the remote home first
    out: dict[str, Any] = {}

    # kong and the whole-tree rsync each twice, in turn (kong, rsync, kong, rsync), and
    # the faster of each: writing 10,000 files on this disk swings by 1.5x from one
    # run to the next, with whatever the page cache is still writing back.
    dest = scratch / "kong"
    kong_times: list[float] = []
    tree_times: list[float] = []
    # Each timed run starts after os.sync(), so none pays for the writeback of the
    # files an earlier one wrote or removed.
    for turn in range(2):
        if turn:
            shutil.rmtree(dest)
        os.sync()
        before = stats.snapshot()
        t0 = time.perf_counter()
        result = state.pull(jobs, dest)
        kong_times.append(time.perf_counter() - t0)
        tree = scratch / "tree"
        os.sync()
        t0 = time.perf_counter()
        rsync(cluster, port, base_dir, tree)
        tree_times.append(time.perf_counter() - t0)
        shutil.rmtree(tree)
    out["kong_s"] = min(kong_times)
    out["kong_runs_s"] = kong_times
    out["rsync_tree_s"] = min(tree_times)
    out["rsync_tree_runs_s"] = tree_times
    out["kong_round_trips"] = stats.snapshot()["round_trips"] - before["round_trips"]
    out["bytes"] = result.bytes_moved
    out["files"] = result.files_moved
    os.sync()
    before = stats.snapshot()
    t0 = time.perf_counter()
    again = state.pull(jobs, dest)
    out["repull_s"] = time.perf_counter() - t0
    out["repull_round_trips"] = stats.snapshot()["round_trips"] - before["round_trips"]
    out["repull_bytes"] = again.bytes_moved
    shutil.rmtree(dest)

    if with_loop:
        dest = scratch / "loop"
        picked = jobs[:sample]
        t0 = time.perf_counter()
        for job in picked:
            rsync(cluster, port, state.default_driver.job_paths(job).output_dir,
                  dest / str(job.job_id))
        out["rsync_loop_s"] = (time.perf_counter() - t0) * len(jobs) / len(picked)
        out["rsync_loop_sample"] = len(picked)
        shutil.rmtree(dest)

    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", default="0,25", help="ms each way, comma-separated")
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--files", type=int, default=10)
    parser.add_argument("--file-kb", type=int, default=10)
    parser.add_argument("--big-files", type=int, default=5)
    parser.add_argument("--big-mb", type=int, default=500)
    parser.add_argument("--sample", type=int, default=30,
                        help="jobs the per-job rsync loop is measured on")
    parser.add_argument("--sets", default="a,b", help="data sets to run: a, b or a,b")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--scratch", type=Path,
                        help="where both tools write (default: a temp dir); e.g. a dir on "
                             "/dev/shm to take the laptop's disk out of the comparison")
    args = parser.parse_args()
    latencies = [float(x) for x in args.latency.split(",")]
    if shutil.which("rsync") is None:
        raise SystemExit("bench_pull needs rsync on this machine (apt-get install rsync)")

    os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")
    os.environ["KONG_AGENT"] = "0"
    base = Path(tempfile.mkdtemp(prefix="kong-bench-pull-"))
    os.environ["KONG_HOME"] = str(base / "home")
    from deploy.cluster import start_cluster
    from deploy.engine import ensure_engine

    ensure_engine(lambda m: print(m, file=sys.stderr))
    running = start_cluster("sshd", f"bench-pull-{os.getpid()}", base / "cluster",
                            log=lambda m: print(m, file=sys.stderr))
    cluster = running.cluster
    results: list[dict[str, Any]] = []
    try:
        code, home = cluster.exec(["sh", "-c", "printf %s $HOME"], user=cluster.user)
        sets = {
            "a": (f"{home}/bench-a", args.jobs, args.files, args.file_kb * 1024),
            "b": (f"{home}/bench-b", args.big_files, 1, args.big_mb << 20),
        }
        sets = {k: v for k, v in sets.items() if k in args.sets.split(",")}
        for name, (root, jobs, files, size) in sets.items():
            t0 = time.perf_counter()
            code, out = cluster.exec(["python3", "-c", _MAKE_DATA, f"{root}/x", str(jobs),
                                      str(files), str(size)], user=cluster.user)
            if code != 0:
                raise SystemExit(f"cannot write the data set on the host: {out}")
            print(f"data set ({name}): {jobs} x {files} x {size:,} bytes written in "
                  f"{time.perf_counter() - t0:.1f} s", file=sys.stderr)
        for latency in latencies:
            proxy = Proxy(cluster.host, cluster.port, latency) if latency else None
            port = proxy.port if proxy else cluster.port
            try:
                for name, (root, jobs, _files, _size) in sets.items():
                    # remote_dir/<install id>/<job id>: the data set was written under x/
                    state = kong_state(base, cluster, port, root, f"{name}{port}")
                    install = state.default_driver.base_dir.rsplit("/", 1)[1]
                    code, out = cluster.exec(["sh", "-c", f"rm -rf {root}/{install} && "
                                              f"mv {root}/x {root}/{install}"], user=cluster.user)
                    assert code == 0, out
                    made = [state.create_job(command="true") for _ in range(jobs)]
                    scratch = Path(tempfile.mkdtemp(dir=args.scratch)) if args.scratch \
                        else base / "scratch"
                    try:
                        r = measure(state, cluster, port, f"{root}/{install}", made,
                                    args.sample, scratch, with_loop=(name == "a"))
                    finally:
                        shutil.rmtree(scratch, ignore_errors=True)
                    r["scratch"] = str(args.scratch or "temp dir")
                    r.update(set=name, latency_ms=latency, jobs=jobs)
                    results.append(r)
                    print(json.dumps(r), file=sys.stderr)
                    cluster.exec(["mv", f"{root}/{install}", f"{root}/x"], user=cluster.user)
                    from kong import db

                    db.dispose()
                    shutil.rmtree(base / "home", ignore_errors=True)
            finally:
                if proxy:
                    proxy.stop()
    finally:
        running.stop()
        shutil.rmtree(base, ignore_errors=True)

    print(f"{'set':3} {'lat':>5} {'jobs':>5} {'MB':>7} {'kong s':>8} {'RTs':>4} "
          f"{'re-pull s':>9} {'RTs':>4} {'rsync/job s':>11} {'rsync tree s':>12} "
          f"{'vs loop':>8} {'vs tree':>8} {'kong MB/s':>9} {'rsync MB/s':>10}")
    for r in results:
        mb = r["bytes"] / 1e6
        loop = r.get("rsync_loop_s")
        kong_s = r["kong_s"]
        vs_loop = f"{loop / kong_s:.1f}x" if loop else "-"
        print(f"{r['set']:3} {r['latency_ms']:>4.0f}ms {r['jobs']:>5} {mb:>7.1f} "
              f"{r['kong_s']:>8.2f} {r['kong_round_trips']:>4} {r['repull_s']:>9.3f} "
              f"{r['repull_round_trips']:>4} "
              f"{(f'{loop:.1f}' if loop else '-'):>11} {r['rsync_tree_s']:>12.2f} "
              f"{vs_loop:>8} "
              f"{r['rsync_tree_s'] / r['kong_s']:>7.2f}x {mb / r['kong_s']:>9.1f} "
              f"{mb / r['rsync_tree_s']:>10.1f}")
    print("vs loop / vs tree: rsync's time over kong's (above 1: kong is faster). "
          f"rsync per job measured on {args.sample} jobs, scaled.")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
