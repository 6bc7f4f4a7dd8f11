#!/usr/bin/env python3
"""Benchmark: bulk submit of N held jobs as job arrays, against the per-job floor.

    python benchmarks/bench_arrays.py [--cluster slurm|lsf|htcondor] [--jobs 1000]
                                      [--latency 0,25] [--json OUT]

For each latency (ms each way, through benchmarks/latency_proxy.py) it runs, each in
a fresh process and kong home (benchmarks/run.py's machinery):
  arrays     ``State.submit_job`` of N jobs with equal options, then a refresh and a
             kill of them all: Slurm, one ``sbatch --array`` per MaxArraySize; the
             LSF simulator, one ``bsub -J "name[1-N]"`` per MAX_JOB_ARRAY_SIZE;
             HTCondor, one cluster (one ``condor_submit`` of ``queue ... from``)
  per-job    the same with the profile's ``arrays: false`` (one submit per job)
and beside them the floor of issue 21: N plain submits of one job each, of kong's
own job scripts inside the container (``sbatch``, ``bsub``, or ``condor_submit`` of
a one-job description), plus one round trip. The target: arrays at most 0.3x that
floor, refresh and kill one round trip each. The kill's floor (Slurm, LSF): those
floor jobs killed with one ``scancel``/``bkill`` per job, + 1 RTT: what kong's kill
cost before it named many ids in one command. Jobs never run: Slurm's are held
(``--hold``), LSF's too (``bsub -H``: PSUSP), HTCondor's can match no machine
(``requirements = False``: idle), so the benchmark measures kong, not the node.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.run import (  # noqa: E402 - after the path of the checkout
    HELD,
    Row,
    Setup,
    floor_submit,
    render,
    round_trip,
    row,
    run_child,
)

TARGET = 0.3


@dataclass(frozen=True)
class Scheduler:
    """What the benchmark needs of one kind of test cluster."""

    kind: str  # deploy/ image: slurm, lsf-sim, htcondor
    tool: str  # the submit command, for the notes
    #: create_job options that keep a job from running
    held: dict[str, Any]

    def floor_submit(self, setup: Setup, base_dir: str) -> float:
        """N plain submits of one job each, of kong's own scripts, in the container
        (another job name keeps them apart from kong's; nothing else differs)."""
        if self.kind == "slurm":
            return floor_submit(setup, base_dir)
        scripts = f"{shlex.quote(base_dir)}/*/job.sh"
        if self.kind == "lsf-sim":
            # bsub reads the #BSUB lines (-H among them) from its stdin; -J wins
            return setup.inside(0, f'i=0; for f in {scripts}; do i=$((i+1)); '
                                   'bsub -J floor-$i < "$f" > /dev/null; done')
        return setup.inside(0, f'i=0; for f in {scripts}; do i=$((i+1)); '
                               'printf "executable = /bin/sh\\narguments = %s\\n'
                               'requirements = False\\nlog = /dev/null\\nqueue\\n" "$f" | '
                               'condor_submit -batch-name floor-$i > /dev/null; done')

    def floor_kill(self, setup: Setup) -> float | None:
        """Kill the jobs floor_submit left; on Slurm and the LSF simulator one kill
        command per job, timed (the per-job floor of a kill: what kong ran before a
        kill of many jobs was one command), elsewhere untimed (None)."""
        if self.kind == "slurm":
            return setup.inside(0, "squeue -u kong -h -o '%i %j' | awk '$2 ~ /^floor-/ "
                                   "{print $1}' | while read -r i; do scancel \"$i\"; done")
        if self.kind == "lsf-sim":
            return setup.inside(0, "bjobs -noheader -o 'jobid job_name' | awk '$2 ~ "
                                   "/^floor-/ {print $1}' | while read -r i; do "
                                   "bkill \"$i\" > /dev/null 2>&1; done")
        setup.inside(0, "condor_rm -constraint 'regexp(\"^floor-\", JobBatchName)' "
                        "> /dev/null 2>&1 || true")
        return None


SCHEDULERS = {
    "slurm": Scheduler("slurm", "sbatch", {"extra": HELD}),
    "lsf": Scheduler("lsf-sim", "bsub", {"extra": ["-H"]}),
    "htcondor": Scheduler("htcondor", "condor_submit", {"requirements": "False"}),
}


def measure(setup: Setup, sched: Scheduler, work: Path, latency: float, n: int) -> list[Row]:
    rows: list[Row] = []
    base = setup.profile(0, latency, work)
    rtt = round_trip(base, str(work / f"rtt-{latency:g}"))
    print(f"[bench] latency {latency:g} ms: round trip {rtt * 1000:.1f} ms", file=sys.stderr)
    for mode, options in (("arrays", {}), ("per-job", {"arrays": False})):
        home = work / f"home-{latency:g}-{mode}"
        ctx = {"home": str(home), "jobs": n, "folder": "/bench", "job_options": sched.held,
               "config": {"default_profile": "a", "profiles": {"a": {**base, **options}}}}
        submitted = run_child("submit", ctx)
        # the floor right beside kong's run: the load here changes minute by minute
        floor = sched.floor_submit(setup, submitted["base_dir"]) + rtt
        kill_floor = sched.floor_kill(setup)
        rows.append(row(f"submit ({mode})", latency, n, submitted, floor,
                        f"floor: {n} plain {sched.tool} of kong's scripts in the "
                        "container + 1 RTT"))
        refreshed = run_child("refresh", ctx)
        rows.append(row(f"refresh ({mode})", latency, n, refreshed))
        killed = run_child("kill", ctx)
        rows.append(row(f"kill ({mode})", latency, n, killed,
                        None if kill_floor is None else kill_floor + rtt,
                        "" if kill_floor is None else
                        f"floor: {n} kill commands, one per job, in the container + 1 RTT"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cluster", choices=sorted(SCHEDULERS), default="slurm")
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--latency", default="0,25", help="ms each way, comma-separated")
    parser.add_argument("--json", default=None,
                        help="JSON output (default benchmarks/out/arrays[-CLUSTER].json)")
    args = parser.parse_args()
    sched = SCHEDULERS[args.cluster]
    work = Path(tempfile.mkdtemp(prefix="kong-bench-arrays-"))
    setup = Setup(work, 1, kind=sched.kind)
    rows: list[Row] = []
    try:
        for latency in (float(x) for x in args.latency.split(",")):
            rows.extend(measure(setup, sched, work, latency, args.jobs))
    finally:
        setup.stop()
    print(f"{args.cluster}:")
    print(render(rows))
    verdicts: list[dict[str, Any]] = []
    for r in rows:
        if r.name == "submit (arrays)" and r.ratio is not None:
            ok = r.ratio <= TARGET
            print(f"{r.latency_ms:g} ms: arrays submit {r.ratio:.2f}x the per-job floor "
                  f"(target at most {TARGET}x): {'met' if ok else 'NOT met'}")
            verdicts.append({"latency_ms": r.latency_ms, "ratio": r.ratio, "met": ok})
        if r.name.startswith(("refresh (arrays)", "kill (arrays)")):
            print(f"{r.latency_ms:g} ms: {r.name}: {r.round_trips} round trip(s)")
    suffix = "" if args.cluster == "slurm" else f"-{args.cluster}"
    out = Path(args.json or f"benchmarks/out/arrays{suffix}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"cluster": args.cluster, "rows": [r.__dict__ for r in rows],
                               "verdicts": verdicts}, indent=2))


if __name__ == "__main__":
    main()
