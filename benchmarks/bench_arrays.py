#!/usr/bin/env python3
"""Benchmark: bulk submit of N held jobs as Slurm job arrays, against the per-job floor.

    python benchmarks/bench_arrays.py [--jobs 1000] [--latency 0,25] [--json OUT]

For each latency (ms each way, through benchmarks/latency_proxy.py) it runs, each in
a fresh process and kong home (benchmarks/run.py's machinery):
  arrays     ``State.submit_job`` of N jobs with equal options (one ``sbatch --array``
             per MaxArraySize), then a refresh and a kill of them all
  per-job    the same with the profile's ``arrays: false`` (one ``sbatch`` per job)
and beside them the floor of issue 21: N plain ``sbatch`` calls of kong's own job
scripts inside the container plus one round trip. The target: arrays at most 0.3x
that floor, refresh and kill one round trip each.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.run import (  # noqa: E402 - after the path of the checkout
    Row,
    Setup,
    floor_kill,
    floor_submit,
    render,
    round_trip,
    row,
    run_child,
)

TARGET = 0.3


def measure(setup: Setup, work: Path, latency: float, n: int) -> list[Row]:
    rows: list[Row] = []
    base = setup.profile(0, latency, work)
    rtt = round_trip(base, str(work / f"rtt-{latency:g}"))
    print(f"[bench] latency {latency:g} ms: round trip {rtt * 1000:.1f} ms", file=sys.stderr)
    for mode, options in (("arrays", {}), ("per-job", {"arrays": False})):
        home = work / f"home-{latency:g}-{mode}"
        ctx = {"home": str(home), "jobs": n, "folder": "/bench",
               "config": {"default_profile": "a", "profiles": {"a": {**base, **options}}}}
        submitted = run_child("submit", ctx)
        # the floor right beside kong's run: the load here changes minute by minute
        floor = floor_submit(setup, submitted["base_dir"]) + rtt
        floor_kill(setup)
        rows.append(row(f"submit ({mode})", latency, n, submitted, floor,
                        f"floor: {n} plain sbatch of kong's scripts in the container + 1 RTT"))
        refreshed = run_child("refresh", ctx)
        rows.append(row(f"refresh ({mode})", latency, n, refreshed))
        killed = run_child("kill", ctx)
        rows.append(row(f"kill ({mode})", latency, n, killed))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--latency", default="0,25", help="ms each way, comma-separated")
    parser.add_argument("--json", default="benchmarks/out/arrays.json")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="kong-bench-arrays-"))
    setup = Setup(work, 1)
    rows: list[Row] = []
    try:
        for latency in (float(x) for x in args.latency.split(",")):
            rows.extend(measure(setup, work, latency, args.jobs))
    finally:
        setup.stop()
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
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"rows": [r.__dict__ for r in rows], "verdicts": verdicts},
                              indent=2))


if __name__ == "__main__":
    main()
