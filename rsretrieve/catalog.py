"""What ``rsretrieve list`` prints: the names in each of rsretrieve's registries.

It lives apart from ``registry`` (which every package imports to declare its registry), so
that no package and the registry import each other.
"""

from __future__ import annotations

from rsretrieve.errors import warn
from rsretrieve.registry import unknown_name_error

REGISTRIES = ("adapters", "encoders", "datasets", "fixtures", "architectures", "bands")
RENAMED = {"models": "architectures"}  # `list models` read like the zoo (`rsretrieve models`)


def band_lines() -> list[str]:
    """The band table, one aligned line a band (sensor, name, centre, width, DOFA's value)."""
    from rsretrieve.datasets.bands import band_rows

    lines = [f"{'sensor':<6} {'band':<4} {'centre um':>10} {'width um':>9} {'dofa um':>8}  note"]
    for row in band_rows():
        width = "-" if row["width_um"] is None else f"{row['width_um']:.3f}"
        lines.append(f"{row['sensor']:<6} {row['band']:<4} {row['centre_um']:>10g} {width:>9} {row['dofa_um']:>8g}  {row['note']}")
    return lines


def registered_names(what: str) -> list[str]:
    """The names registered as ``what`` (``architectures``: open_clip's model configs)."""
    if what in RENAMED:
        warn(f"`rsretrieve list {what}` is now `rsretrieve list {RENAMED[what]}` (`rsretrieve models` lists the "
             "model zoo); the old name will go")
        what = RENAMED[what]
    if what == "adapters":
        from rsretrieve.adapters import ADAPTERS as registry
    elif what == "encoders":
        from rsretrieve.encoders import ENCODERS as registry
    elif what == "datasets":
        from rsretrieve.datasets import DATASETS as registry
    elif what == "fixtures":
        from rsretrieve.datasets.fixtures import FIXTURES as registry
    elif what == "architectures":
        from rsretrieve.encoders.open_clip import list_models

        return list(list_models())
    elif what == "bands":
        return band_lines()
    else:
        raise unknown_name_error("list", what, REGISTRIES)
    return registry.names()
