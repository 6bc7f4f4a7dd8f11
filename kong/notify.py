"""Notifications when a wait ends, through apprise (the config's ``notify:`` list).

Each entry of ``notify:`` is an apprise URL (``json://host:port/path``,
``mailto://...``, ``ntfy://...``, ``slack://...``) or a mapping
``{url: ..., on: [finished, failed, timeout, progress]}`` limiting when it fires.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING

from kong.errors import ConfigError

if TYPE_CHECKING:
    from kong.config import Config
    from kong.model.job import Job

EVENTS = ("finished", "failed", "timeout", "progress")


def summary(jobs: Sequence[Job]) -> str:
    """``3 completed, 1 failed``: counts per status, in a fixed order."""
    counts = Counter(j.status.name for j in jobs)
    order = ["COMPLETED", "FAILED", "RUNNING", "SUBMITTED", "CREATED", "UNKNOWN"]
    return ", ".join(f"{counts[name]} {name.lower()}" for name in order if counts[name])


def parse_targets(entries: Sequence[object]) -> list[tuple[str, set[str]]]:
    """The ``notify:`` entries as (url, events) pairs; a malformed entry is a ConfigError."""
    targets: list[tuple[str, set[str]]] = []
    for entry in entries:
        if isinstance(entry, str):
            targets.append((entry, set(EVENTS) - {"progress"}))
            continue
        if not isinstance(entry, dict):
            raise ConfigError(f"notify entry {entry!r}: expected a URL string or a mapping")
        url = entry.get("url")
        if not isinstance(url, str):
            raise ConfigError(f"notify entry {entry!r}: expected a `url:` string")
        # YAML 1.1 reads an unquoted `on:` key as the boolean true.
        on = entry.get("on", entry.get(True)) or EVENTS
        if not isinstance(on, (list, tuple)) or not all(isinstance(e, str) for e in on):
            raise ConfigError(f"notify entry {_redact(url)}: `on:` expected a list of events "
                              f"({', '.join(EVENTS)})")
        if unknown := set(on) - set(EVENTS):
            raise ConfigError(f"notify entry {_redact(url)}: unknown events {sorted(unknown)} "
                              f"(expected: {', '.join(EVENTS)})")
        targets.append((url, set(on)))
    return targets


_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://\S")


def check_syntax(entries: Sequence[object]) -> None:
    """What the config check can afford on every start: each entry well-formed and a
    ``scheme://...`` URL (apprise itself takes a second to load its plugins)."""
    for url, _on in parse_targets(entries):
        if not _URL.match(url):
            raise ConfigError(f"{_redact(url)!r} is not a notification URL "
                              "(expected scheme://..., e.g. ntfy://topic or mailto://user@host)")


def check_targets(targets: Sequence[tuple[str, set[str]]], where: str = "config") -> None:
    """Refuse URLs apprise cannot parse (apprise parses without sending). Runs when a
    wait that notifies starts, so a bad URL stops it before it waits, not after."""
    if not targets:
        return
    import logging

    import apprise

    logging.getLogger("apprise").setLevel(logging.CRITICAL)
    for url, _on in targets:
        if not apprise.Apprise().add(url):
            raise ConfigError(f"{where}: notify: {_redact(url)} is not a notification URL "
                              "apprise understands "
                              "(see https://github.com/caronc/apprise/wiki)")


class Notifier:
    def __init__(self, config: Config) -> None:
        self.targets = parse_targets(config.notify)
        check_targets(self.targets, str(config.path or "config"))

    def _send(self, event: str, title: str, body: str, kind: str = "info") -> int:
        """Send to every target that wants ``event``; returns how many accepted it."""
        urls = [url for url, on in self.targets if event in on]
        if not urls:
            return 0
        import logging

        import apprise

        # apprise logs each failure with its own wording; kong says it in one line below.
        logging.getLogger("apprise").setLevel(logging.CRITICAL)
        delivered = 0
        for url in urls:
            sender = apprise.Apprise()
            if not sender.add(url):
                _warn(f"notify target {_redact(url)} is not a URL apprise understands")
                continue
            if sender.notify(title=title, body=body, notify_type=kind):
                delivered += 1
            else:
                _warn(f"could not deliver the notification to {_redact(url)}")
        return delivered

    def finished(self, jobs: Sequence[Job], seconds: float) -> None:
        completed = sum(1 for j in jobs if j.status.name == "COMPLETED")
        failed = sum(1 for j in jobs if j.status.name == "FAILED")
        others = len(jobs) - completed - failed
        title = f"kong: {len(jobs)} job(s) done: {completed} completed, {failed} failed"
        if others:
            title += f", {others} not run"
        self._send("failed" if failed else "finished", title,
                   f"{summary(jobs)} after {seconds:.0f} s",
                   kind="failure" if failed else "success")

    def timeout(self, jobs: Sequence[Job], seconds: float) -> None:
        self._send("timeout", f"kong: wait TIMEOUT after {seconds:.0f} s", summary(jobs),
                   kind="warning")

    def progress(self, jobs: Sequence[Job], seconds: float) -> None:
        self._send("progress", "kong: wait progress", f"{summary(jobs)} after {seconds:.0f} s")


def _warn(message: str) -> None:
    import sys

    print(f"kong: warning: {message}", file=sys.stderr)


def _redact(url: str) -> str:
    """A target URL without its credentials, for messages."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    host = rest.rpartition("@")[2].split("/", 1)[0]
    return f"{scheme}://{host}/..."
