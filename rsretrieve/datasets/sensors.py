"""Sensors, their band names and how a CrisisLandMark key tells its sensor."""

from __future__ import annotations

from typing import Literal

from rsretrieve.datasets.bands import stored_bands
from rsretrieve.errors import ConfigError, DataError

Sensor = Literal["s1", "s2"]
SENSORS: tuple[Sensor, ...] = ("s2", "s1")

# Stored bands, in stored order, from the band table (datasets.bands): Sentinel-2's 13 TOA
# bands without B10 (the authors' loader inserts a zero B10), VV and VH, and 8-bit RGB (Git-10M).
S2_BANDS: tuple[str, ...] = stored_bands("s2")
S1_BANDS: tuple[str, ...] = stored_bands("s1")
RGB_BANDS: tuple[str, ...] = stored_bands("rgb")
BANDS: dict[str, tuple[str, ...]] = {"s2": S2_BANDS, "s1": S1_BANDS, "rgb": RGB_BANDS}

# Source dataset names that appear inside sample keys.
SOURCES: dict[str, Sensor] = {
    "benv2s2": "s2",
    "cabuar": "s2",
    "sen2flood": "s2",
    "benv2s1": "s1",
    "mmflood": "s1",
    "sen1flood": "s1",
    "quakeset": "s1",
}


MISSION_PREFIXES: dict[str, Sensor] = {"S1A_": "s1", "S1B_": "s1", "S1C_": "s1", "S2A_": "s2", "S2B_": "s2", "S2C_": "s2"}


def sensor_of_key(key: str) -> Sensor:
    """Tell a sample's sensor from the source name embedded in its key (CrisisLandMark), or
    from a Sentinel product-name prefix such as S2A_ or S1B_ (BigEarthNet patch names)."""
    for prefix, sensor in MISSION_PREFIXES.items():
        if key.startswith(prefix):
            return sensor
    lowered = key.lower()
    found = {SOURCES[src] for src in SOURCES if src in lowered}
    if len(found) != 1:
        problem = "names no known source" if not found else "names sources of both sensors"
        raise DataError(
            f"key '{key}' {problem}; expected exactly one of {', '.join(SOURCES)} in the key"
        )
    return found.pop()


def parse_sensor_filter(value: str) -> tuple[Sensor, ...]:
    """'s1' | 's2' | 'all' -> the sensors to keep."""
    value = value.lower()
    if value == "all":
        return SENSORS
    if value in SENSORS:
        return (value,)  # type: ignore[return-value]
    raise ConfigError(f"unknown sensor '{value}'; use s1, s2 or all")
