"""Where patches are, and exact geographic filters.

A CrisisLandMark patch's location is its centre pixel ``coords[:, 60, 60]`` in the sample's
``crs`` attribute (an EPSG code, stored as float32), turned into lon/lat degrees the way the
authors do it (pyproj, inverse projection; EPSG:4326 is taken as it is). Coords stored as
integers are read as numbers, and a ``crs`` stored as text (``'EPSG:32610'``, ``'32610'``) as
its code; a code that is not a whole number, or a CRS that is not two-dimensional (geocentric
EPSG:4978, 3-D EPSG:4979), locates nothing (``crs_code``, ``LonLat.transformer``). Unknown
locations are NaN here and null in ``ids.parquet``; ``rsretrieve check`` names each cause.

Filters: a box ``lon_min,lat_min,lon_max,lat_max`` (lon_min > lon_max crosses the
antimeridian) and a circle ``--near lon,lat --radius-km R`` by haversine distance on a sphere
of the Earth's mean radius. A row of unknown location passes no geographic filter.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from functools import cache
from typing import Any

import numpy as np

from rsretrieve.errors import ConfigError

EARTH_RADIUS_KM = 6371.0088  # IUGG mean radius
WGS84 = 4326
CENTRE = 60  # centre pixel of a 120 x 120 patch


NUMBER_WORDS = {2: "two", 4: "four"}


def parse_numbers(text: str, count: int, option: str, what: str) -> tuple[float, ...]:
    """``count`` comma-separated finite numbers, or an error naming ``option``."""
    try:
        values = tuple(float(v) for v in str(text).split(","))
    except ValueError:
        values = ()
    if len(values) != count or not all(np.isfinite(values)):
        raise ConfigError(f"{option} '{text}' must be {NUMBER_WORDS.get(count, count)} numbers {what}")
    return values


def check_bbox(box: tuple[float, float, float, float], option: str = "--bbox") -> None:
    lon0, lat0, lon1, lat1 = box
    if not (-180 <= lon0 <= 180 and -180 <= lon1 <= 180 and lon0 != lon1 and -90 <= lat0 < lat1 <= 90):
        raise ConfigError(f"{option} {box} is not lon_min,lat_min,lon_max,lat_max in degrees "
                          "(lat_min below lat_max; lon_min above lon_max crosses the antimeridian)")


def in_bbox(lon: np.ndarray, lat: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
    """Rows inside ``box``; a box with lon_min > lon_max wraps around the antimeridian."""
    lon0, lat0, lon1, lat1 = box
    inside = (lon >= lon0) & (lon <= lon1) if lon0 < lon1 else (lon >= lon0) | (lon <= lon1)
    return inside & (lat >= lat0) & (lat <= lat1)


def check_lonlat(lon: float, lat: float, option: str) -> None:
    if not (-180 <= lon <= 180 and -90 <= lat <= 90):
        raise ConfigError(f"{option} {lon},{lat} is not lon,lat in degrees (lon -180..180, lat -90..90)")


def parse_lonlat(text: str, option: str) -> tuple[float, float]:
    lon, lat = parse_numbers(text, 2, option, "lon,lat")
    check_lonlat(lon, lat, option)
    return lon, lat


def haversine_km(lon: np.ndarray, lat: np.ndarray, lon0: float, lat0: float) -> np.ndarray:
    """Great-circle distance from (lon0, lat0) to every (lon, lat), in km."""
    phi, phi0 = np.radians(lat), np.radians(lat0)
    dphi, dlmb = phi - phi0, np.radians(np.asarray(lon) - lon0)
    h = np.sin(dphi / 2) ** 2 + np.cos(phi) * np.cos(phi0) * np.sin(dlmb / 2) ** 2
    return 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0)))


@dataclasses.dataclass(frozen=True)
class GeoFilter:
    """Keep rows inside ``bbox`` and within ``radius_km`` of ``near`` (each when given)."""

    bbox: tuple[float, float, float, float] | None = None
    near: tuple[float, float] | None = None
    radius_km: float | None = None

    def __post_init__(self) -> None:
        if self.bbox is not None:
            check_bbox(self.bbox)
        if (self.near is None) != (self.radius_km is None):
            raise ConfigError("--near and --radius-km go together: give both or neither")
        if self.near is not None:
            check_lonlat(*self.near, "--near")
            if not self.radius_km > 0:  # type: ignore[operator]
                raise ConfigError(f"--radius-km must be above 0, got {self.radius_km}")

    @classmethod
    def parse(cls, bbox: str | None = None, near: str | None = None, radius_km: float | None = None) -> "GeoFilter":
        """The filter of the command-line options."""
        box = parse_numbers(bbox, 4, "--bbox", "lon_min,lat_min,lon_max,lat_max") if bbox is not None else None
        point = parse_lonlat(near, "--near") if near is not None else None
        return cls(box, point, radius_km)  # type: ignore[arg-type]

    def active(self) -> bool:
        return self.bbox is not None or self.near is not None

    def options(self) -> list[str]:
        """The command-line options this filter was given as (for messages)."""
        return [*(["--bbox"] if self.bbox is not None else []), *(["--near"] if self.near is not None else [])]

    def mask(self, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
        """Rows that pass; NaN (unknown) locations never do."""
        lon, lat = np.asarray(lon, np.float64), np.asarray(lat, np.float64)
        keep = np.isfinite(lon) & np.isfinite(lat)
        if self.bbox is not None:
            keep &= in_bbox(lon, lat, self.bbox)
        if self.near is not None:
            with np.errstate(invalid="ignore"):
                keep &= haversine_km(lon, lat, *self.near) <= self.radius_km  # type: ignore[operator]
        return keep

    def describe(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(self).items() if v is not None}

    def swapped(self) -> "GeoFilter | None":
        """The filter with every lon,lat read as lat,lon (None where that is no valid filter):
        what a user who typed latitude first meant."""
        box = None if self.bbox is None else (self.bbox[1], self.bbox[0], self.bbox[3], self.bbox[2])
        point = None if self.near is None else (self.near[1], self.near[0])
        try:
            return GeoFilter(box, point, self.radius_km)
        except ConfigError:
            return None

    def text(self) -> str:
        """The options as typed: --bbox 0,45,12,55 --near 7.6,45.1 --radius-km 50."""
        parts = [f"--bbox {','.join(f'{v:g}' for v in self.bbox)}"] if self.bbox is not None else []
        if self.near is not None:
            parts.append(f"--near {self.near[0]:g},{self.near[1]:g} --radius-km {self.radius_km:g}")
        return " ".join(parts)


EPSG_TEXT = re.compile(r"^\s*(?:epsg\s*:\s*)?(\d+)(?:\.0*)?\s*$", re.IGNORECASE)


def crs_code(value: object) -> tuple[int | None, str | None]:
    """The EPSG code a ``crs`` attribute holds, or None with why: absent, not finite, text that
    is no EPSG code, or a number that is not whole (32610.7 is no code, not 32610)."""
    if value is None:
        return None, "no 'crs' attribute"
    if isinstance(value, np.ndarray) and value.size == 1:
        value = value.ravel()[0]
    if isinstance(value, (bytes, np.bytes_)):
        value = value.decode("utf-8", "replace")
    if isinstance(value, str):
        found = EPSG_TEXT.match(value)
        if found is None:
            return None, f"crs {value!r} is not an EPSG code"
        return int(found.group(1)), None
    try:
        number = float(np.asarray(value, dtype=np.float64).ravel()[0])
    except (TypeError, ValueError, IndexError):
        return None, f"crs {value!r} is not an EPSG code"
    if not np.isfinite(number):
        return None, "the 'crs' attribute is not finite"
    if number != round(number) or number <= 0:
        return None, f"crs {number:g} is not a whole positive EPSG code"
    return int(number), None


class LonLat:
    """Projected centre coordinates -> lon/lat degrees, one cached pyproj transformer per CRS."""

    def __init__(self) -> None:
        self._transformers: dict[int, Any] = {}

    def convert(self, x: np.ndarray, y: np.ndarray, crs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """lon, lat of every (x, y) in its EPSG ``crs``; NaN where any of the three is missing,
        not finite or names no CRS pyproj knows, where (x, y) is (0, 0), or where the inverse
        projection fails."""
        x, y, crs = (np.asarray(a, np.float64) for a in (x, y, crs))
        lon, lat = np.full(x.shape, np.nan), np.full(x.shape, np.nan)
        # (0, 0) is a fill value, not a place: it is the origin of no CRS a patch is stored in
        known = np.isfinite(x) & np.isfinite(y) & np.isfinite(crs) & (crs > 0) & ((x != 0) | (y != 0))
        for code in np.unique(crs[known]).tolist():
            rows = known & (crs == code)
            transformer = self.transformer(int(code))
            if transformer is None:
                continue
            if transformer == WGS84:
                lon[rows], lat[rows] = x[rows], y[rows]
            else:
                lon[rows], lat[rows] = transformer.transform(x[rows], y[rows], errcheck=False)
        bad = ~(np.isfinite(lon) & np.isfinite(lat) & (np.abs(lat) <= 90) & (np.abs(lon) <= 180))
        lon[bad], lat[bad] = np.nan, np.nan
        return lon, lat

    def transformer(self, code: int) -> Any:
        """pyproj's inverse transformer for EPSG ``code``; ``WGS84`` for lon/lat; None if
        unknown or not a 2-D CRS (a patch's two coords cannot place it in a geocentric or 3-D one)."""
        if code not in self._transformers:
            from pyproj import Transformer

            crs = epsg_crs(code)
            if crs is None or flat_problem(crs) is not None:
                self._transformers[code] = None
            else:
                self._transformers[code] = WGS84 if crs.to_epsg() == WGS84 else \
                    Transformer.from_crs(crs, WGS84, always_xy=True)
        return self._transformers[code]


@cache
def epsg_crs(code: int) -> Any:
    """pyproj's CRS of EPSG ``code``, or None when pyproj knows no such code (looked up once
    per code: ``check`` asks for every patch)."""
    from pyproj import CRS
    from pyproj.exceptions import CRSError

    try:
        return CRS.from_epsg(code)
    except CRSError:
        return None


def flat_problem(crs: Any) -> str | None:
    """Why a CRS cannot hold a patch's 2-D centre (geocentric, or not two axes), else None."""
    if crs.is_geocentric:
        return "is geocentric (x, y, z from the Earth's centre)"
    if len(crs.axis_info) != 2:
        return f"has {len(crs.axis_info)} axes, not 2"
    return None


PIXEL_M = 10.0  # CrisisLandMark's documented pixel spacing (Sentinel-1 GRD and Sentinel-2 at 10 m)
SPACING_SLACK = 3.0  # flagged beyond 3.3 m .. 30 m
METRES_PER_DEGREE = 111_320.0


def pixel_spacing_m(coords: np.ndarray, crs: Any) -> float | None:
    """The median distance in metres between neighbouring pixels of a (2, H, W) coords grid
    in ``crs`` (degrees turned to metres at the patch's latitude); None if not measurable."""
    x, y = coords
    steps = np.concatenate([np.hypot(np.diff(x, axis=1), np.diff(y, axis=1)).ravel(),
                            np.hypot(np.diff(x, axis=0), np.diff(y, axis=0)).ravel()])
    steps = steps[np.isfinite(steps)]
    if steps.size == 0:
        return None
    step = float(np.median(steps))
    if crs.is_geographic:
        lat = float(np.nanmedian(y)) if np.isfinite(y).any() else 0.0
        dx = np.median(np.abs(np.diff(x, axis=1))) * METRES_PER_DEGREE * np.cos(np.radians(lat))
        dy = np.median(np.abs(np.diff(y, axis=0))) * METRES_PER_DEGREE
        step = float(np.hypot(dx, dy) if dx and dy else max(dx, dy))
    else:
        unit = crs.axis_info[0].unit_conversion_factor or 1.0
        step *= unit
    return step


def coords_problem(x: float, y: float, crs: object, converter: LonLat) -> tuple[str, str] | None:
    """(code, why) when a centre coordinate is impossible for its CRS (the ``crs`` attribute
    as stored); None when plausible."""
    code, why = crs_code(crs)
    if code is None:
        return "coords-crs", f"{why}: the location cannot be converted"
    if not (np.isfinite(x) and np.isfinite(y)):
        return "coords-nonfinite", "centre coords are not finite: location unknown"
    if x == 0 and y == 0:
        return "coords-zero", "centre coords are (0, 0), a fill value: location unknown"
    info = epsg_crs(code)
    if info is None:
        return "coords-crs", f"crs {code} is not an EPSG code pyproj knows: location unknown"
    flat = flat_problem(info)
    if flat is not None:
        return "coords-crs-not-2d", f"EPSG:{code} {flat}: a patch's two coords cannot be located in it"
    crs = code
    if info.to_epsg() == WGS84 and not (-90 <= y <= 90 and -180 <= x <= 180):
        return "coords-range", f"centre ({x:g}, {y:g}) is beyond ±90° latitude or ±180° longitude for EPSG:4326"
    lon, lat = converter.convert(np.array([x]), np.array([y]), np.array([crs]))
    if not np.isfinite(lon[0]):
        return "coords-range", f"centre ({x:g}, {y:g}) does not convert to lon/lat in EPSG:{int(crs)}"
    area = info.area_of_use
    if area is not None and not _near_area(float(lon[0]), float(lat[0]), area):
        return "coords-area", (f"centre ({x:g}, {y:g}) in EPSG:{int(crs)} lies at lon {lon[0]:.2f}, lat {lat[0]:.2f}, "
                               f"outside the CRS's area of use ({area.west:g}..{area.east:g}°E, {area.south:g}..{area.north:g}°N)")
    return None


AREA_MARGIN_DEG = 3.0  # UTM patches just across a zone edge are common and harmless


def _near_area(lon: float, lat: float, area: Any) -> bool:
    west, east = area.west - AREA_MARGIN_DEG, area.east + AREA_MARGIN_DEG
    lon_ok = west <= lon <= east if area.west <= area.east else (lon >= west or lon <= east)
    return lon_ok and area.south - AREA_MARGIN_DEG <= lat <= area.north + AREA_MARGIN_DEG


def location_columns(lon: np.ndarray, lat: np.ndarray) -> Mapping[str, Any]:
    """``lon``/``lat`` columns for ids.parquet, null where unknown."""
    import pyarrow as pa

    lon, lat = np.asarray(lon, np.float64), np.asarray(lat, np.float64)
    missing = ~(np.isfinite(lon) & np.isfinite(lat))
    return {"lon": pa.array(lon, pa.float64(), mask=missing), "lat": pa.array(lat, pa.float64(), mask=missing)}
