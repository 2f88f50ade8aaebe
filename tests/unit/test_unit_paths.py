"""A unit's object path, escaped as systemd escapes it: the agent asks for a unit's
properties on that path directly (one call, not ``LoadUnit`` first)."""

from __future__ import annotations

import pytest

from pockestrator.controllers.systemd.unit_state import unescape_unit_path, unit_path

PREFIX = "/org/freedesktop/systemd1/unit/"


@pytest.mark.parametrize(
    ("name", "escaped"),
    [
        # The paths systemd's LoadUnit answered on the test bed.
        ("zz-probe.service", "zz_2dprobe_2eservice"),
        ("nothere-x.service", "nothere_2dx_2eservice"),
        ("shop-pocketbase.service", "shop_2dpocketbase_2eservice"),
        # A leading digit is escaped, later ones are not (bus_label_escape).
        ("0day-pocketbase.service", "_30day_2dpocketbase_2eservice"),
        ("app2-pocketbase.service", "app2_2dpocketbase_2eservice"),
        ("a_b@1.service", "a_5fb_401_2eservice"),
        ("", "_"),
    ],
)
def test_a_unit_name_is_escaped_into_its_object_path_as_systemd_does(
    name: str, escaped: str
) -> None:
    assert unit_path(name) == PREFIX + escaped
    if name:
        assert unescape_unit_path(unit_path(name)) == name
