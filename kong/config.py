"""Where kong keeps things, and the YAML config that says which clusters exist.

Locations: ``$KONG_HOME`` holds everything (``config.yml``, the database, local
job dirs, log cache) when set; otherwise the platform's config and data dirs
(platformdirs), with ``$KONG_CONFIG_DIR`` overriding the config dir alone.

A config is validated as a whole before anything starts; an error names the
file, the line, the key and what was expected, in one line.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kong.errors import ConfigError

APP_NAME = "kong"
DRIVERS = ("local", "slurm", "htcondor", "lsf", "sge")

#: keys every profile may have, whatever its driver: how to reach the host
CONNECTION_KEYS: dict[str, type | tuple[type, ...]] = {
    "driver": str,
    "host": str,
    "port": int,
    "user": str,
    "identity_file": str,
    "known_hosts": str,
    "jump_host": str,
    "remote_dir": str,
    "max_connections": int,
    "connect_interval": (int, float),
    "umask": str,
    "retry": dict,  # the retry policy of the profile's jobs (kong.retry)
}

TOP_LEVEL_KEYS: dict[str, type | tuple[type, ...]] = {
    "default_profile": str,
    "database": str,
    "profiles": dict,
    "notify": list,
    "agent": bool,
    "agent_idle_timeout": (int, float),
    "history_size": int,
}

DEFAULT_PROFILE = "local"

#: the longest pause between two new connections a profile may ask for
MAX_CONNECT_INTERVAL_S = 3600.0


def control_characters(text: str) -> list[str]:
    """The control characters (newline, tab, escapes, ...) in ``text``, as reprs."""
    return sorted({repr(c) for c in text if ord(c) < 32 or 127 <= ord(c) < 160})


def config_dir() -> Path:
    if home := os.environ.get("KONG_HOME"):
        return Path(home).expanduser()
    if cfg := os.environ.get("KONG_CONFIG_DIR"):
        return Path(cfg).expanduser()
    import platformdirs

    return Path(platformdirs.user_config_dir(APP_NAME))


def data_dir() -> Path:
    if home := os.environ.get("KONG_HOME"):
        return Path(home).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir(APP_NAME))


def config_file() -> Path:
    return config_dir() / "config.yml"


@dataclass(frozen=True)
class Profile:
    """One place jobs run: a driver, how to reach its host, and driver options."""

    name: str
    driver: str
    host: str | None = None
    port: int | None = None
    user: str | None = None
    identity_file: str | None = None
    known_hosts: str | None = None
    jump_host: str | None = None
    remote_dir: str | None = None
    max_connections: int | None = None
    connect_interval: float | None = None
    #: umask of kong's commands and jobs on the host (default "077": the user's alone)
    umask: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    #: the retry policy of its jobs, normalised (kong.retry.Policy.as_dict); None: none
    retry: dict[str, Any] | None = None

    @property
    def is_remote(self) -> bool:
        return self.host is not None


class _Lines:
    """Line numbers of keys in a YAML document, for error messages."""

    def __init__(self, text: str | None) -> None:
        self.lines: dict[tuple[str, ...], int] = {}
        if text is None:
            return
        try:
            node = yaml.compose(text)
        except yaml.YAMLError:
            return
        self._walk(node, ())

    def _walk(self, node: Any, path: tuple[str, ...]) -> None:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                sub = (*path, str(key.value))
                self.lines[sub] = key.start_mark.line + 1
                self._walk(value, sub)

    def where(self, path: tuple[str, ...]) -> str:
        while path:
            if path in self.lines:
                return f":{self.lines[path]}"
            path = path[:-1]
        return ""


def _type_name(expected: type | tuple[type, ...]) -> str:
    names = {str: "a string", int: "an integer", float: "a number", bool: "true or false",
             dict: "a mapping", list: "a list"}
    if isinstance(expected, tuple):
        return " or ".join(names.get(t, t.__name__) for t in expected)
    return names.get(expected, expected.__name__)


def _is_instance(value: Any, expected: type | tuple[type, ...]) -> bool:
    # YAML's `true` is an int in Python; a port of `yes` must not pass as 1.
    types = expected if isinstance(expected, tuple) else (expected,)
    if isinstance(value, bool) and bool not in types:
        return False
    return isinstance(value, types)


class Config:
    """The loaded, validated config.

    ``Config()`` reads ``config.yml`` (or uses the built-in default of one
    ``local`` profile when there is no file); ``Config(data=dict)`` takes
    pre-loaded data as is, validated the same way.
    """

    def __init__(self, data: dict[str, Any] | None = None) -> None:
        self.path: Path | None = None
        text: str | None = None
        if data is None:
            from kong.paths import check_start_up

            home = os.environ.get("KONG_HOME")
            check_start_up(config_file(), data_dir(), Path(home).expanduser() if home else None)
            path = config_file()
            if path.exists():
                self.path = path
                text = path.read_text()
                try:
                    data = yaml.safe_load(text) or {}
                except yaml.YAMLError as exc:
                    mark = getattr(exc, "problem_mark", None)
                    line = f":{mark.line + 1}" if mark is not None else ""
                    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
                    raise ConfigError(f"{path}{line}: YAML syntax error: {problem}") from None
            else:
                data = {}
        self._lines = _Lines(text)
        if not isinstance(data, dict):
            raise self._fail((), f"expected a mapping at the top level, got {type(data).__name__}")
        self.data: dict[str, Any] = dict(data)
        self._validate()

    # -- validation --------------------------------------------------------------------

    def _fail(self, path: tuple[str, ...], message: str) -> ConfigError:
        where = f"{self.path}{self._lines.where(path)}" if self.path else "config"
        key = ".".join(path)
        return ConfigError(f"{where}: {key}: {message}" if key else f"{where}: {message}")

    def _check_mapping(
        self,
        data: Mapping[str, Any],
        schema: Mapping[str, type | tuple[type, ...]],
        prefix: tuple[str, ...],
        allow_extra: bool = False,
    ) -> None:
        for key, value in data.items():
            if key not in schema:
                if allow_extra:
                    continue
                known = ", ".join(sorted(schema))
                raise self._fail((*prefix, str(key)), f"unknown key (expected one of: {known})")
            if value is not None and not _is_instance(value, schema[key]):
                raise self._fail(
                    (*prefix, key),
                    f"expected {_type_name(schema[key])}, got {type(value).__name__} {value!r}",
                )

    def _validate(self) -> None:
        self._check_mapping(self.data, TOP_LEVEL_KEYS, ())
        raw_profiles = self.data.get("profiles") or {DEFAULT_PROFILE: {"driver": "local"}}
        self.profiles: dict[str, Profile] = {}
        for name, body in raw_profiles.items():
            self.profiles[str(name)] = self._profile(str(name), body)
        self.default_profile: str = self.data.get("default_profile") or next(iter(self.profiles))
        if self.default_profile not in self.profiles:
            raise self._fail(
                ("default_profile",),
                f"no profile named {self.default_profile!r} (profiles: {', '.join(self.profiles)})",
            )
        self._check_database(self.data.get("database"))
        self.notify: list[Any] = list(self.data.get("notify") or [])
        for i, target in enumerate(self.notify):
            if not isinstance(target, (str, dict)):
                raise self._fail(("notify", str(i)), "expected a URL string or a mapping")
        from kong.notify import check_syntax

        try:
            check_syntax(self.notify)
        except ConfigError as exc:
            raise self._fail(("notify",), str(exc)) from None
        self.agent: bool = bool(self.data.get("agent", True))
        #: seconds without requests after which the kong agent stops (and closes connections)
        self.agent_idle_timeout: float = float(self.data.get("agent_idle_timeout") or 1800)
        self.history_size: int = int(self.data.get("history_size") or 10000)

    def _check_database(self, url: Any) -> None:
        """A ``database:`` that SQLAlchemy cannot parse, or of a dialect it does not know,
        is refused here; a missing DBAPI package is named when the database is opened."""
        if not url:
            return
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError, NoSuchModuleError

        try:
            parsed = make_url(str(url))
        except ArgumentError:
            raise self._fail(("database",), f"not a database URL: {url!r} (expected e.g. "
                             "sqlite:////path/kong.sqlite or postgresql://host/db)") from None
        try:
            parsed.get_dialect()
        except NoSuchModuleError:
            raise self._fail(("database",), f"unknown database kind {parsed.drivername!r} "
                             "(expected e.g. sqlite or postgresql)") from None

    def _check_connection(self, path: tuple[str, ...], body: Mapping[str, Any]) -> None:
        """Values that parse but cannot work: they would hang a submit or block the agent."""
        max_connections = body.get("max_connections")
        if max_connections is not None and max_connections < 1:
            raise self._fail((*path, "max_connections"),
                             f"expected at least 1, got {max_connections}")
        interval = body.get("connect_interval")
        if interval is not None and not (
            math.isfinite(interval) and 0 <= interval <= MAX_CONNECT_INTERVAL_S
        ):
            raise self._fail((*path, "connect_interval"),
                             f"expected seconds from 0 to {MAX_CONNECT_INTERVAL_S:g}, "
                             f"got {interval!r}")
        for key in ("remote_dir", "host", "user", "identity_file", "known_hosts", "jump_host"):
            value = body.get(key)
            if isinstance(value, str) and (bad := control_characters(value)):
                raise self._fail((*path, key),
                                 f"control characters ({', '.join(bad)}) are not allowed")

    def _profile(self, name: str, body: Any) -> Profile:
        path = ("profiles", name)
        if not isinstance(body, dict):
            raise self._fail(path, "expected a mapping with at least `driver:`")
        driver = body.get("driver")
        if driver is None:
            raise self._fail(path, f"missing `driver:` (one of: {', '.join(DRIVERS)})")
        if driver not in DRIVERS:
            raise self._fail((*path, "driver"), f"unknown driver {driver!r} (expected one of: "
                             f"{', '.join(DRIVERS)})")
        self._check_mapping(body, CONNECTION_KEYS, path, allow_extra=True)
        self._check_connection(path, body)
        options = {k: v for k, v in body.items() if k not in CONNECTION_KEYS}
        from kong.drivers import driver_options

        try:
            schema = driver_options(driver)
        except ConfigError as exc:  # e.g. a driver this version of kong does not ship yet
            raise self._fail((*path, "driver"), str(exc)) from None
        for key, value in options.items():
            if key not in schema:
                known = ", ".join(sorted(set(schema) | set(CONNECTION_KEYS))) or "none"
                raise self._fail((*path, key), f"unknown option for driver {driver} "
                                 f"(expected one of: {known})")
            if value is not None and not _is_instance(value, schema[key]):
                raise self._fail((*path, key), f"expected {_type_name(schema[key])}, "
                                 f"got {type(value).__name__} {value!r}")
        umask = body.get("umask")
        if umask is not None and not re.fullmatch(r"0?[0-7]{3}", umask):
            raise self._fail((*path, "umask"), f"expected an octal umask such as \"027\", "
                             f"got {umask!r}")
        if "host" not in body and any(k in body for k in ("port", "user", "jump_host")):
            raise self._fail(path, "`port`, `user` and `jump_host` need a `host`")
        policy = self._retry_policy(path, body.get("retry"))
        return Profile(
            name=name,
            driver=driver,
            host=body.get("host"),
            port=body.get("port"),
            user=body.get("user"),
            identity_file=body.get("identity_file"),
            known_hosts=body.get("known_hosts"),
            jump_host=body.get("jump_host"),
            remote_dir=body.get("remote_dir"),
            max_connections=body.get("max_connections"),
            connect_interval=body.get("connect_interval"),
            umask=umask,
            options=options,
            retry=policy,
        )

    def _retry_policy(self, path: tuple[str, ...], raw: Any) -> dict[str, Any] | None:
        if raw is None:
            return None
        from kong.retry import PolicyError, parse_policy

        try:
            return parse_policy(raw).as_dict()
        except PolicyError as exc:
            key = (*path, "retry", exc.key) if exc.key else (*path, "retry")
            raise self._fail(key, str(exc)) from None

    # -- derived -----------------------------------------------------------------------

    @property
    def data_dir(self) -> Path:
        return data_dir()

    @property
    def database_url(self) -> str:
        url = self.data.get("database")
        if url:
            return str(url)
        return f"sqlite:///{self.data_dir / 'kong.sqlite'}"

    def profile(self, name: str | None = None) -> Profile:
        name = name or self.default_profile
        try:
            return self.profiles[name]
        except KeyError:
            raise ConfigError(
                f"no profile named {name!r} (profiles: {', '.join(self.profiles)})"
            ) from None

    def dict(self) -> dict[str, Any]:
        return dict(self.data)
