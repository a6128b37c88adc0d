"""What ``rsretrieve list`` prints: the names in each of rsretrieve's registries.

It lives apart from ``registry`` (which every package imports to declare its registry), so
that no package and the registry import each other.
"""

from __future__ import annotations

from rsretrieve.errors import warn
from rsretrieve.registry import unknown_name_error

REGISTRIES = ("adapters", "encoders", "datasets", "fixtures", "architectures")
RENAMED = {"models": "architectures"}  # `list models` read like the zoo (`rsretrieve models`)


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
    else:
        raise unknown_name_error("list", what, REGISTRIES)
    return registry.names()
