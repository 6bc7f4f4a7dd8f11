#!/usr/bin/env python3
"""Benchmark: the LSF SIMULATOR's commands (deploy/lsf-sim/lsfsim.py) as its spool grows.

    python benchmarks/bench_lsfsim.py [--rev main] [--bsubs 200] [--finished 5000]
                                      [--json OUT]

Starts one lsf-sim container and, inside it as its SSH user, runs each version of
lsfsim.py (the worktree's, and with ``--rev`` the one of that git revision) from a
directory of its own (its own spool, ``LSF_SIM_SPOOL``, and settings): first on an
empty spool, then after ``--finished`` jobs have finished. Printed side by side:

  bsub x N      N plain ``bsub -H true`` (held: PSUSP, nothing runs), one process each
  bjobs         one plain ``bjobs`` (the N held jobs are its listing)
  bjobs ID      one ``bjobs -a -o ... -json ID`` of a finished job (kong's refresh)
  bhist -l ID   one ``bhist -l ID`` of that job (kong's look-up of an aged-out job)
  bjobs -a      one ``bjobs -a -noheader -o 'jobid stat'``: lists every job finished
                within CLEAN_PERIOD, so it grows with those by nature (real LSF's too)

Single commands are the median of 5. The finished jobs are copies of a job that
really ran, saved through the simulator's own ``save`` (the code path of a job's
end), their finish times spread over the last two hours: with CLEAN_PERIOD 3600 half
of them are still listed by ``bjobs -a``, half have aged out.
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
SIM = "deploy/lsf-sim/lsfsim.py"
COMMANDS = ("bsub", "bjobs", "bkill", "bhist", "bparams")
ROWS = ("bsub x N", "bjobs", "bjobs ID", "bhist -l ID", "bjobs -a")


# -- inside the container (standard library only) ----------------------------------------


def _run(argv: list[str]) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout


def _timed(argv: list[str], repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _bsubs(n: int, tag: str) -> float:
    start = time.perf_counter()
    for i in range(n):
        subprocess.run(["bsub", "-H", "-J", f"bench-{tag}-{i}", "true"], check=True,
                       stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def _phase(n: int, tag: str, job_id: str) -> dict[str, float]:
    figures = {"bsub x N": _bsubs(n, tag), "bjobs": _timed(["bjobs"])}
    if job_id:
        figures["bjobs ID"] = _timed(["bjobs", "-a", "-o", "jobid stat exit_code", "-json",
                                      job_id])
        figures["bhist -l ID"] = _timed(["bhist", "-l", job_id])
    figures["bjobs -a"] = _timed(["bjobs", "-a", "-noheader", "-o", "jobid stat"])
    _run(["bkill", "-J", f"bench-{tag}-*", "0"])  # they end: the spool keeps them
    return figures


def _fill(directory: Path, finished: int, template_id: str) -> None:
    """``finished`` copies of the finished job ``template_id``, through the simulator's
    own save (the records, scripts and environments a real job leaves)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("lsfsim", directory / "bin" / "lsfsim.py")
    assert spec is not None and spec.loader is not None
    sim = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sim)
    template = sim.load(template_id)
    assert template is not None and template["stat"] == "DONE", template
    script = Path(template["job_file"]).read_text()
    env = Path(template["env_file"]).read_text()
    now = time.time()
    with sim.locked():
        for i in range(finished):
            job_id = sim.next_id()
            job_file = sim.jobs_dir() / f"{job_id}.sh"
            env_file = sim.jobs_dir() / f"{job_id}.env"
            job_file.write_text(script)
            env_file.write_text(env)
            end = now - 7200 + 7200 * i / finished
            sim.save({**template, "id": job_id, "name": f"done-{i}", "job_file": str(job_file),
                      "env_file": str(env_file), "submit_time": end - 2, "start_time": end - 1,
                      "finish_time": end})


def inside(directory: Path, bsubs: int, finished: int) -> dict[str, Any]:
    os.environ.update(PATH=f"{directory / 'bin'}:{os.environ['PATH']}",
                      LSF_SIM_SPOOL=str(directory / "spool"),
                      LSF_SIM_CONF=str(directory / "lsf-sim.conf"))
    os.chdir(directory)
    floor = _timed([sys.executable, "-c", "pass"])
    empty = _phase(bsubs, "empty", "")
    out = _run(["bsub", "-J", "template", "-o", "/dev/null", "true"])
    template_id = out.split("<", 1)[1].split(">", 1)[0]
    deadline = time.time() + 60
    while _run(["bjobs", "-a", "-noheader", "-o", "stat", template_id]).strip() != "DONE":
        if time.time() > deadline:
            raise SystemExit(f"the template job {template_id} did not end")
        time.sleep(0.1)
    start = time.perf_counter()
    _fill(directory, finished, template_id)
    fill_seconds = time.perf_counter() - start
    full = _phase(bsubs, "full", template_id)
    return {"python_start": floor, "empty": empty, "full": full, "fill_seconds": fill_seconds}


# -- on the host -----------------------------------------------------------------------


def _install(cluster: Any, directory: str, source: str) -> None:
    """One version of the simulator in ``directory`` of the container, with the
    settings of a fresh test cluster's (8 slots, CLEAN_PERIOD 3600)."""
    conf = ("CLUSTER=kong-sim\nSLOTS=8\nQUEUES=normal short long\nCLEAN_PERIOD=3600\n"
            "JOB_TERMINATE_INTERVAL=10\nMINUTE=60\nMAX_JOB_ARRAY_SIZE=1000\n")
    bench = Path(__file__).read_text()
    code = (
        "import os, sys; d = sys.argv[1]; os.makedirs(d + '/bin'); os.makedirs(d + '/spool');"
        "open(d + '/bin/lsfsim.py', 'w').write(sys.argv[2]);"
        "os.chmod(d + '/bin/lsfsim.py', 0o755);"
        "open(d + '/lsf-sim.conf', 'w').write(sys.argv[3]);"
        "open(d + '/bench_lsfsim.py', 'w').write(sys.argv[4]);"
        "[os.symlink('lsfsim.py', d + '/bin/' + c) for c in sys.argv[5:]]"
    )
    status, out = cluster.exec(["python3", "-c", code, directory, source, conf, bench,
                                *COMMANDS], user=cluster.user)
    if status != 0:
        raise SystemExit(f"installing the simulator in {directory}: {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rev", default=None,
                        help="also measure lsfsim.py of this git revision (e.g. main)")
    parser.add_argument("--bsubs", type=int, default=200)
    parser.add_argument("--finished", type=int, default=5000)
    parser.add_argument("--json", default=None, help="write the figures here too")
    parser.add_argument("--inside", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inside:
        print(json.dumps(inside(Path(args.inside), args.bsubs, args.finished)))
        return

    sys.path.insert(0, str(ROOT))
    from deploy.cluster import start_cluster

    versions = {}
    if args.rev:
        versions[args.rev] = subprocess.run(["git", "show", f"{args.rev}:{SIM}"], cwd=ROOT,
                                            check=True, capture_output=True,
                                            text=True).stdout
    versions["worktree"] = (ROOT / SIM).read_text()
    work = Path(tempfile.mkdtemp(prefix="kong-bench-lsfsim-"))
    running = start_cluster("lsf-sim", f"bench-lsfsim-{os.getpid()}", work,
                            log=lambda m: print(m, file=sys.stderr))
    results: dict[str, Any] = {}
    try:
        cluster = running.cluster
        for n, (label, source) in enumerate(versions.items()):
            directory = f"/tmp/bench-lsfsim-{n}"
            _install(cluster, directory, source)
            print(f"[bench] {label}: measuring in {directory}", file=sys.stderr)
            status, out = cluster.exec(
                ["python3", f"{directory}/bench_lsfsim.py", "--inside", directory,
                 "--bsubs", str(args.bsubs), "--finished", str(args.finished)],
                user=cluster.user)
            if status != 0:
                raise SystemExit(f"{label}: {out}")
            results[label] = json.loads(out.strip().splitlines()[-1])
    finally:
        running.stop()
    labels = list(results)
    print(f"LSF simulator, seconds ({args.bsubs} bsub; then {args.finished} finished jobs; "
          f"python3 start {results[labels[-1]]['python_start'] * 1000:.0f} ms)")
    header = f"{'':<14}" + "".join(f"{f'{lab} ({phase})':>22}" for lab in labels
                                   for phase in ("empty", f"+{args.finished}"))
    print(header)
    for name in ROWS:
        cells = []
        for lab in labels:
            for phase in ("empty", "full"):
                value = results[lab][phase].get(name)
                cells.append(f"{value:>22.3f}" if value is not None else f"{'-':>22}")
        print(f"{name.replace('N', str(args.bsubs)):<14}" + "".join(cells))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
