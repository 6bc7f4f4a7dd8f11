"""Drivers: one per scheduler, all behind ``kong.drivers.base.DriverBase``.

Driver modules are imported only when a profile uses them, so that starting
kong does not pay for schedulers nobody configured.
"""

from __future__ import annotations

import importlib
import threading
import weakref
from typing import TYPE_CHECKING, Any

from kong.config import Config
from kong.errors import ConfigError

if TYPE_CHECKING:
    from kong.drivers.base import DriverBase

_MODULES = {
    "local": ("kong.drivers.local", "LocalDriver"),
    "slurm": ("kong.drivers.slurm", "SlurmDriver"),
    "htcondor": ("kong.drivers.htcondor", "HTCondorDriver"),
    "lsf": ("kong.drivers.lsf", "LSFDriver"),
    "sge": ("kong.drivers.sge", "SGEDriver"),
}

# One driver per (config, profile, database): its transport and caches are shared by
# every job of that profile. Keyed weakly on the Config, so that a config no State
# uses any more takes its drivers with it (and a new Config never gets an old one's).
_instances: weakref.WeakKeyDictionary[Config, dict[tuple[str, str], DriverBase]] = (
    weakref.WeakKeyDictionary()
)
_lock = threading.Lock()


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


def driver_for_profile(
    config: Config, profile: str, install_id: str, driver_name: str | None = None
) -> DriverBase:
    """The one driver of ``profile`` under ``config`` for the database whose install id
    is ``install_id`` (created on first use).

    With ``driver_name`` (the driver a job was made with), a profile that is no
    longer in the config gets a stand-in that can list and remove its jobs.
    """
    with _lock:
        drivers = _instances.setdefault(config, {})
        driver = drivers.get((profile, install_id))
        if driver is None:
            if driver_name is not None and profile not in config.profiles:
                from kong.drivers.missing import MissingProfileDriver

                driver = MissingProfileDriver(config, profile, driver_name, install_id)
            else:
                prof = config.profile(profile)
                driver = driver_class(prof.driver)(config, prof, install_id)
            drivers[(profile, install_id)] = driver
        return driver
