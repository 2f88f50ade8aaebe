"""The controllers of one host, wired once at start-up and shared by everyone who needs them.

The reconciler observes through them, the step runner acts through them and the API's host
view reads through them; one value carries them so that the three are built from the same
parts and none of them lists the others' constructor arguments again.
"""

from __future__ import annotations

from dataclasses import dataclass

from pockestrator.controllers.apps import AppReleases
from pockestrator.controllers.caddy import CaddySites
from pockestrator.controllers.pbsettings import InstanceSettings
from pockestrator.controllers.releases import ReleaseCache
from pockestrator.controllers.servicedirs import ServiceDirs
from pockestrator.controllers.snapshots import Snapshots
from pockestrator.controllers.systemd import SystemdBus, SystemdUnits


@dataclass(frozen=True)
class Controllers:
    """systemd (the bus and the unit files), Caddy's sites, the release cache, the folders,
    PocketBase's own settings in each instance, and the app releases."""

    bus: SystemdBus
    units: SystemdUnits
    sites: CaddySites
    releases: ReleaseCache
    dirs: ServiceDirs
    snapshots: Snapshots
    pbsettings: InstanceSettings
    apps: AppReleases
