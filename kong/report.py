"""``kong report``: what the jobs of folders asked for and what they really used.

Per folder: jobs by status and by end reason; memory requested and used (median
and max, MiB), CPU efficiency (median and max), core-hours used (CPU time) and
wasted (CPU-hours allocated, cores x run time, minus those used), and a histogram
of memory used / requested. A job whose scheduler recorded no figure is counted
under "no usage recorded" and left out of that figure: it is never taken as 0.

Pure computation on stored rows (``State.report`` gathers them): 1,000 jobs take
milliseconds (benchmarks/bench_report.py).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import IO, Any

from kong.usage import efficiency, median_max

#: upper edges of the memory used / requested histogram's bins; the last is "over"
BINS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


@dataclass(frozen=True)
class JobFigures:
    """What a report needs of one job."""

    folder: str
    status: str
    cores: int
    memory: int | None  # MiB requested at creation (the scheduler's figure wins)
    data: Mapping[str, Any]


@dataclass
class FolderReport:
    folder: str
    jobs: int = 0
    by_status: Counter[str] = field(default_factory=Counter)
    by_reason: Counter[str] = field(default_factory=Counter)
    mem_requested: list[float] = field(default_factory=list)
    mem_used: list[float] = field(default_factory=list)
    mem_ratio: list[float] = field(default_factory=list)
    cpu_eff: list[float] = field(default_factory=list)
    core_hours_used: float = 0.0
    core_hours_allocated: float = 0.0
    finished: int = 0
    no_usage: int = 0  # finished jobs whose scheduler recorded no usage

    def add(self, job: JobFigures) -> None:
        self.jobs += 1
        self.by_status[job.status] += 1
        reason = job.data.get("end_reason")
        if isinstance(reason, str):
            self.by_reason[reason] += 1
        if job.status not in ("COMPLETED", "FAILED"):
            return
        self.finished += 1
        usage = job.data.get("usage")
        if not isinstance(usage, Mapping) or not any(
                isinstance(usage.get(k), (int, float)) for k in ("cpu_time", "max_rss_mb")):
            self.no_usage += 1
            return
        requested = usage.get("req_mem_mb") or job.memory
        if isinstance(requested, (int, float)):
            self.mem_requested.append(float(requested))
        rss = usage.get("max_rss_mb")
        if isinstance(rss, (int, float)):
            self.mem_used.append(float(rss))
        eff = efficiency(usage, job.memory)
        if eff["memory_efficiency"] is not None:
            self.mem_ratio.append(eff["memory_efficiency"])
        if eff["cpu_efficiency"] is not None:
            self.cpu_eff.append(eff["cpu_efficiency"])
        cpu, elapsed = usage.get("cpu_time"), usage.get("elapsed")
        cpus = usage.get("cpus") or job.cores
        if isinstance(cpu, (int, float)) and isinstance(elapsed, (int, float)):
            self.core_hours_used += float(cpu) / 3600
            self.core_hours_allocated += float(elapsed) * float(cpus) / 3600

    @property
    def core_hours_wasted(self) -> float:
        return max(0.0, self.core_hours_allocated - self.core_hours_used)

    def histogram(self) -> list[int]:
        counts = [0] * (len(BINS) + 1)
        for ratio in self.mem_ratio:
            index = next((i for i, edge in enumerate(BINS) if ratio <= edge), len(BINS))
            counts[index] += 1
        return counts

    def as_dict(self) -> dict[str, Any]:
        def mm(values: list[float]) -> dict[str, float | None]:
            median, top = median_max(values)
            return {"median": median, "max": top}

        return {
            "folder": self.folder, "jobs": self.jobs, "finished": self.finished,
            "by_status": dict(self.by_status), "by_end_reason": dict(self.by_reason),
            "memory_requested_mb": mm(self.mem_requested), "memory_used_mb": mm(self.mem_used),
            "memory_used_over_requested": mm(self.mem_ratio),
            "cpu_efficiency": mm(self.cpu_eff),
            "core_hours_used": self.core_hours_used,
            "core_hours_wasted": self.core_hours_wasted,
            "no_usage_recorded": self.no_usage,
            "memory_histogram": {label: n for label, n in zip(bin_labels(), self.histogram(),
                                                              strict=True)},
        }


def bin_labels() -> list[str]:
    lows = (0.0, *BINS[:-1])
    return [f"{lo * 100:.0f}-{hi * 100:.0f}%" for lo, hi in zip(lows, BINS, strict=True)] + [
        ">100%"]


def build(jobs: Iterable[JobFigures]) -> list[FolderReport]:
    """One report per folder, in folder order, plus a total when there are several."""
    reports: dict[str, FolderReport] = {}
    total = FolderReport("total")
    for job in jobs:
        reports.setdefault(job.folder, FolderReport(job.folder)).add(job)
        total.add(job)
    ordered = [reports[k] for k in sorted(reports)]
    return [*ordered, total] if len(ordered) > 1 else ordered


def _mb(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value / 1024:.1f}G" if value >= 1024 else f"{value:.0f}M"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.0f}%"


def render(reports: list[FolderReport], out: IO[str], width: int = 40) -> None:
    """Plain aligned text: one block per folder, with a bar per histogram bin."""
    blocks = []
    for rep in reports:
        lines = [f"{rep.folder}: {rep.jobs} job{'s' if rep.jobs != 1 else ''}, "
                 + ", ".join(f"{n} {s.lower()}" for s, n in sorted(rep.by_status.items()))]
        if rep.by_reason:
            lines.append("  end reasons      " + ", ".join(
                f"{reason} {n}" for reason, n in rep.by_reason.most_common()))
        req_med, req_max = median_max(rep.mem_requested)
        used_med, used_max = median_max(rep.mem_used)
        eff_med, eff_max = median_max(rep.cpu_eff)
        lines += [
            f"  memory requested median {_mb(req_med)}, max {_mb(req_max)}",
            f"  memory used      median {_mb(used_med)}, max {_mb(used_max)}",
            f"  cpu efficiency   median {_pct(eff_med)}, max {_pct(eff_max)}",
            f"  core-hours       used {rep.core_hours_used:.2f}, "
            f"wasted {rep.core_hours_wasted:.2f}",
        ]
        if rep.no_usage:
            lines.append(f"  no usage recorded for {rep.no_usage} finished job"
                         f"{'s' if rep.no_usage != 1 else ''} (the scheduler's accounting "
                         "has no figures)")
        counts = rep.histogram()
        if any(counts):
            lines.append("  memory used / requested:")
            top = max(counts)
            for label, n in zip(bin_labels(), counts, strict=True):
                bar = "#" * (round(n / top * width) if n else 0)
                lines.append(f"    {label:>8} {bar:<{width}} {n}")
        blocks.append("\n".join(lines))
    out.write("\n\n".join(blocks) + "\n")
