"""Notifications when a wait ends, through apprise (the config's ``notify:`` list).

Each entry of ``notify:`` is an apprise URL (``json://host:port/path``,
``mailto://...``, ``ntfy://...``, ``slack://...``) or a mapping
``{url: ..., on: [finished, failed, timeout, progress]}`` limiting when it fires.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from kong.errors import ConfigError

if TYPE_CHECKING:
    from kong.config import Config
    from kong.model.job import Job

EVENTS = ("finished", "failed", "timeout", "progress")


def summary(jobs: Sequence[Job]) -> str:
    counts = Counter(j.status.name for j in jobs)
    return ", ".join(f"{n} {name.lower()}" for name, n in sorted(counts.items()))


class Notifier:
    def __init__(self, config: Config) -> None:
        self.targets: list[tuple[str, set[str]]] = []
        for entry in config.notify:
            if isinstance(entry, str):
                self.targets.append((entry, set(EVENTS) - {"progress"}))
            else:
                url = entry.get("url")
                if not isinstance(url, str):
                    raise ConfigError(f"notify entry {entry!r}: expected a `url:` string")
                on = set(entry.get("on") or EVENTS)
                if unknown := on - set(EVENTS):
                    raise ConfigError(f"notify entry {url}: unknown events {sorted(unknown)}")
                self.targets.append((url, on))

    def _send(self, event: str, title: str, body: str, **extra: Any) -> int:
        urls = [url for url, on in self.targets if event in on]
        if not urls:
            return 0
        import apprise

        sender = apprise.Apprise()
        for url in urls:
            sender.add(url)
        ok = sender.notify(title=title, body=body)
        return len(urls) if ok else 0

    def finished(self, jobs: Sequence[Job], seconds: float) -> None:
        failed = sum(1 for j in jobs if j.status.name == "FAILED")
        event = "failed" if failed else "finished"
        word = "FAILED" if failed else "COMPLETED"
        self._send(event, f"kong: {len(jobs)} job(s) done, {word}",
                   f"{summary(jobs)} after {seconds:.0f} s")

    def timeout(self, jobs: Sequence[Job], seconds: float) -> None:
        self._send("timeout", f"kong: wait TIMEOUT after {seconds:.0f} s", summary(jobs))

    def progress(self, jobs: Sequence[Job], seconds: float) -> None:
        self._send("progress", "kong: wait progress", f"{summary(jobs)} after {seconds:.0f} s")
