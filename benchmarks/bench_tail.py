#!/usr/bin/env python3
"""Benchmark: ``kong tail`` of a 1 GB log that has no newline (issue 17).

Before, tail prepended 64 KiB chunks until it had seen enough newlines: quadratic on
long lines (8.5 s for 32 MB, killed after 180 s at 357 MB RSS on 1 GB). Now it reads
from the end, at most 1 MiB. This prints, for one job whose stdout is that log:

* ``kong tail -n 5 JOB`` as a subprocess: wall time and its peak RSS (wait4);
* ``State.tail_log`` in this process: time and peak Python allocations (tracemalloc);
* beside them, measured in the same run: GNU ``tail -c 1MiB`` of the file (the floor:
  the same bytes, no Python) and ``kong ls`` of that one job (kong's start-up: config,
  database, the CLI). Peak RSS of a child includes the Python that forked it.

    python benchmarks/bench_tail.py [--size-mb 1024] [--dense] [--home DIR]

The log is sparse by default (reading it costs the same as a written one: tail
reads only its end); ``--dense`` writes every byte.
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
import tracemalloc
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
KONG = [sys.executable, "-m", "kong"]


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, float, bytes]:
    """Wall seconds, peak RSS (MB) and stdout of one process."""
    with tempfile.TemporaryFile() as out:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.PIPE,
                                stdin=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        err = proc.stderr.read() if proc.stderr else b""
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(argv)} failed: {err.decode(errors='replace')}")
        out.seek(0)
        return elapsed, usage.ru_maxrss / 1024, out.read()


def make_log(path: Path, size: int, dense: bool) -> None:
    with open(path, "wb") as fh:
        if dense:
            block = b"x" * (8 << 20)
            left = size - 1
            while left > 0:
                left -= fh.write(block[: min(left, len(block))])
            fh.write(b"z")
        else:
            fh.truncate(size - 64)
            fh.seek(size - 64)
            fh.write(b"y" * 63 + b"z")  # the end, no newline anywhere


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--dense", action="store_true")
    parser.add_argument("--home", type=Path)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    home = args.home or Path(tempfile.mkdtemp(prefix="kong-bench-tail-"))
    env = {**os.environ, "KONG_HOME": str(home), "KONG_AGENT": "0",
           "PYTHONPATH": str(ROOT)}
    try:
        for words in (["create-job", "--submit", "--", "true"], ["wait", "1"]):
            subprocess.run([*KONG, *words], env=env, check=True, capture_output=True)
        [log] = home.glob("jobs/*/1/log/stdout.txt")
        size = args.size_mb << 20
        make_log(log, size, args.dense)

        results: dict[str, Any] = {"size_bytes": size, "dense": args.dense}
        t, rss, out = timed([*KONG, "tail", "-n", "5", "1"], env)
        assert out.endswith(b"z") and len(out) <= 1 << 20, len(out)
        results["kong tail -n 5"] = {"seconds": t, "peak_rss_mb": rss, "bytes_out": len(out)}
        t, rss, _ = timed([*KONG, "ls"], env)
        results["kong ls (start-up floor)"] = {"seconds": t, "peak_rss_mb": rss}
        tail = shutil.which("tail")
        if tail:
            t, rss, _ = timed([tail, "-c", str(1 << 20), str(log)], env)
            results["tail -c 1MiB (floor)"] = {"seconds": t, "peak_rss_mb": rss}

        os.environ.update(KONG_HOME=str(home), KONG_AGENT="0")
        import kong

        state = kong.get_instance()
        [job] = state.get_jobs("1")
        tracemalloc.start()
        start = time.perf_counter()
        data = state.tail_log(job, "stdout", 5)
        elapsed = time.perf_counter() - start
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert data.endswith(b"z")
        results["State.tail_log (in process)"] = {"seconds": elapsed,
                                                   "peak_alloc_mb": peak / (1 << 20)}
    finally:
        if args.home is None:
            shutil.rmtree(home, ignore_errors=True)

    print(f"tail of a {size >> 20} MiB log without a newline "
          f"({'dense' if args.dense else 'sparse'} file)")
    for name, row in results.items():
        if not isinstance(row, dict):
            continue
        mem = (f"{row['peak_rss_mb']:8.1f} MB RSS" if "peak_rss_mb" in row
               else f"{row['peak_alloc_mb']:8.1f} MB allocated")
        print(f"  {name:32s} {row['seconds']:8.3f} s  {mem}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
