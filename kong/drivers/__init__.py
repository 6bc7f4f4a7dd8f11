"""Drivers: one per scheduler, all behind ``kong.drivers.base.DriverBase``.

Driver modules are imported only when a profile uses them, so that starting
kong does not pay for schedulers nobody configured.
"""

from __future__ import annotations

import importlib
import threading
from typing import TYPE_CHECKING, Any

from kong.errors import ConfigError

if TYPE_CHECKING:
    from kong.config import Config
    from kong.drivers.base import DriverBase

_MODULES = {
    "local": ("kong.drivers.local", "LocalDriver"),
    "slurm": ("kong.drivers.slurm", "SlurmDriver"),
    "htcondor": ("kong.drivers.htcondor", "HTCondorDriver"),
    "lsf": ("kong.drivers.lsf", "LSFDriver"),
    "sge": ("kong.drivers.sge", "SGEDriver"),
}

_instances: dict[tuple[int, str], DriverBase] = {}
_lock = threading.Lock()
_active: Config | None = None


def driver_class(name: str) -> type[DriverBase]:
    try:
        module_name, class_name = _MODULES[name]
    except KeyError:
        raise ConfigError(
            f"unknown driver {name!r} (expected one of: {', '.join(_MODULES)})"
        ) from None
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            raise ConfigError(
                f"driver {name!r} is not available in this version of kong"
            ) from None
        raise
    cls: type[DriverBase] = getattr(module, class_name)
    return cls


def driver_options(name: str) -> dict[str, Any]:
    """The profile options (and per-job overrides) a driver accepts, with their types."""
    return dict(driver_class(name).OPTIONS)


def driver_for_profile(config: Config, profile: str) -> DriverBase:
    """The one driver instance of ``profile`` under ``config`` (created on first use)."""
    key = (id(config), profile)
    with _lock:
        driver = _instances.get(key)
        if driver is None:
            prof = config.profile(profile)
            driver = driver_class(prof.driver)(config, prof)
            _instances[key] = driver
        return driver


def set_active_config(config: Config) -> None:
    """The config that jobs loaded without a State use to find their driver."""
    global _active
    _active = config


def active_config() -> Config:
    global _active
    if _active is None:
        from kong.config import Config

        _active = Config()
    return _active
