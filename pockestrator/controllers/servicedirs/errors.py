"""What goes wrong with a service directory: ``ServiceDirError`` and ``UnsafePath``.

Every failure of this package is a ``ServiceDirError``, so the reconciler can catch one
kind; ``UnsafePath`` is the refusal of a name or path that would lead outside
``base_dir`` or through a symlink (``superuser.SuperuserError`` is the third kind).
"""

from __future__ import annotations


class ServiceDirError(Exception):
    """A service directory could not be brought to its desired state."""


class UnsafePath(ServiceDirError):
    """A name or path would lead outside ``base_dir`` (or through a symlink): refused."""
