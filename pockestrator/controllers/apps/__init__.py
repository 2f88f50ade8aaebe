"""App releases of the services (``releases``): staged, recorded, switched, pruned."""

from pockestrator.controllers.apps.releases import (
    AppRecord,
    AppReleases,
    Release,
    ReleaseError,
    file_diff,
    unpack_into,
)

__all__ = ["AppRecord", "AppReleases", "Release", "ReleaseError", "file_diff", "unpack_into"]
