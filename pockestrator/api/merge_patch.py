"""JSON merge patch (RFC 7396), how a PATCH body changes a service's spec.

Pure and on its own so that its few rules (objects merge, ``null`` removes, anything else
replaces) are pinned down by table tests rather than through the HTTP layer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396: objects merge recursively, ``null`` removes, anything else replaces."""
    if not isinstance(patch, Mapping):
        return patch
    result = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result
