"""Every band of every sensor: its name, centre wavelength and bandwidth.

Wavelength-conditioned models (DOFA) are fed wavelengths, fixed-band models and adapters pick
bands by name; both come from this one table, so that ``--bands B02,B03,B04,B08`` means the
same bands to every model.

- Sentinel-2: the 13 MSI bands. Centres are the ones DOFA and PANGAEA's DOFA configuration
  use; bandwidths are ESA's for Sentinel-2A (nm). B10 (cirrus, 1.373 um) is not stored by
  CrisisLandMark or BigEarthNet (12 bands are), so it can never be selected.
- Sentinel-1: VV and VH of the C-band SAR (5.405 GHz, a wavelength of about 5.55 cm =
  55,465 um). DOFA was trained with both at 3.75 um, a convention, not the physical value: a
  wavelength model is fed the convention it was trained with (``dofa_um``).
- RGB (8-bit aerial and satellite images, Git-10M): red, green, blue at DOFA's RGB
  convention 0.665, 0.560, 0.490 um.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from rsretrieve.errors import ConfigError, DataError

C_BAND_UM = 299_792_458 / 5.405e9 * 1e6  # Sentinel-1's C band: about 55,465 um
DOFA_SAR_UM = 3.75  # the wavelength DOFA's training gave VV and VH


@dataclass(frozen=True)
class Band:
    """One band. ``centre_um``: physical centre wavelength; ``dofa_um``: what DOFA-style
    wavelength models are fed (equal to it but for SAR); ``stored``: whether the datasets
    rsretrieve reads hold it."""

    sensor: str
    name: str
    centre_um: float
    width_um: float | None
    dofa_um: float
    stored: bool = True
    note: str = ""


def _s2(name: str, centre: float, width_nm: float, stored: bool = True, note: str = "") -> Band:
    return Band("s2", name, centre, width_nm / 1000, centre, stored, note)


BAND_TABLE: dict[str, tuple[Band, ...]] = {
    "s2": (
        _s2("B01", 0.44, 21, note="coastal aerosol, 60 m"),
        _s2("B02", 0.49, 66, note="blue, 10 m"),
        _s2("B03", 0.56, 36, note="green, 10 m"),
        _s2("B04", 0.665, 31, note="red, 10 m"),
        _s2("B05", 0.705, 15, note="red edge 1, 20 m"),
        _s2("B06", 0.74, 15, note="red edge 2, 20 m"),
        _s2("B07", 0.783, 20, note="red edge 3, 20 m"),
        _s2("B08", 0.832, 106, note="near infrared, 10 m"),
        _s2("B8A", 0.864, 21, note="narrow near infrared, 20 m"),
        _s2("B09", 0.945, 20, note="water vapour, 60 m"),
        _s2("B10", 1.373, 31, stored=False, note="cirrus, 60 m; not stored (12 of 13 bands are)"),
        _s2("B11", 1.61, 91, note="short-wave infrared 1, 20 m"),
        _s2("B12", 2.20, 175, note="short-wave infrared 2, 20 m"),
    ),
    "s1": (
        Band("s1", "VV", C_BAND_UM, None, DOFA_SAR_UM, note="C band 5.405 GHz, dB; DOFA's convention 3.75 um"),
        Band("s1", "VH", C_BAND_UM, None, DOFA_SAR_UM, note="C band 5.405 GHz, dB; DOFA's convention 3.75 um"),
    ),
    "rgb": (
        Band("rgb", "R", 0.665, None, 0.665, note="8-bit red"),
        Band("rgb", "G", 0.56, None, 0.56, note="8-bit green"),
        Band("rgb", "B", 0.49, None, 0.49, note="8-bit blue"),
    ),
}


def stored_bands(sensor: str) -> tuple[str, ...]:
    """The names of the bands a dataset of ``sensor`` stores, in stored order."""
    return tuple(b.name for b in sensor_bands(sensor) if b.stored)


def sensor_bands(sensor: str) -> tuple[Band, ...]:
    if sensor not in BAND_TABLE:
        raise ConfigError(f"no band table for sensor '{sensor}' (known: {', '.join(BAND_TABLE)})")
    return BAND_TABLE[sensor]


def band(sensor: str, name: str) -> Band:
    for entry in sensor_bands(sensor):
        if entry.name == name:
            return entry
    raise ConfigError(f"{sensor} has no band '{name}' (its bands: {', '.join(b.name for b in sensor_bands(sensor))})")


def wavelengths(sensor: str, names: Sequence[str], convention: str = "centre") -> list[float]:
    """Centre wavelengths (um) of ``names``: physical (``centre``) or as DOFA was fed (``dofa``)."""
    if convention not in ("centre", "dofa"):
        raise ConfigError(f"unknown wavelength convention '{convention}' (centre, dofa)")
    return [band(sensor, n).centre_um if convention == "centre" else band(sensor, n).dofa_um for n in names]


WAVELENGTH = re.compile(r"^(\d+(?:\.\d*)?|\.\d+)\s*(um|µm|nm)?$", re.IGNORECASE)
SHORT_S2 = re.compile(r"^B(\d)$", re.IGNORECASE)  # B2 -> B02


def _as_name(text: str) -> str:
    """A band name as the table writes it, upper case (``b2`` -> ``B02``)."""
    upper = text.strip().upper()
    return f"B0{upper[1]}" if SHORT_S2.match(upper) else upper


def canonical_band(sensor: str, given: str, available: Sequence[str], dataset: str) -> str:
    """The band that ``given`` names among ``available`` (a name, any case, ``B2`` for
    ``B02``; or a wavelength in um or nm, matched to the band whose range holds it, else the
    nearest centre within 5%). A band the data does not hold is an error naming it and the
    dataset."""
    text = given.strip()
    upper = _as_name(text)
    names = {b.name.upper(): b.name for b in sensor_bands(sensor)}
    if upper in names:
        name = names[upper]
    else:
        found = WAVELENGTH.match(text)
        if found is None:
            raise ConfigError(f"--bands: '{given}' is neither a {sensor} band ({', '.join(available)}) nor a wavelength "
                              "(0.665, 665nm)")
        value = float(found.group(1)) / (1000.0 if (found.group(2) or "").lower() == "nm" else 1.0)
        name = _band_at(sensor, value, given)
    if name not in available:
        stored = band(sensor, name).stored
        why = "is not stored by any dataset rsretrieve reads" if not stored else "is not among its bands"
        raise DataError(f"--bands: band {name} ({given}) {why}: {dataset} holds {', '.join(available)}")
    return name


def _band_at(sensor: str, value: float, given: str) -> str:
    holding = [b for b in sensor_bands(sensor) if b.width_um and abs(b.centre_um - value) <= b.width_um / 2]
    if holding:
        return min(holding, key=lambda b: abs(b.centre_um - value)).name
    nearest = min(sensor_bands(sensor), key=lambda b: abs(b.centre_um - value))
    if abs(nearest.centre_um - value) <= 0.05 * nearest.centre_um:
        return nearest.name
    raise ConfigError(f"--bands: no {sensor} band at {given} (nearest: {nearest.name} at {nearest.centre_um:g} um)")


def band_rows() -> list[dict[str, object]]:
    """The table as ``rsretrieve list bands`` and docs/models.md show it."""
    return [{"sensor": b.sensor, "band": b.name, "centre_um": round(b.centre_um, 3), "width_um": b.width_um,
             "dofa_um": b.dofa_um, "stored": b.stored, "note": b.note}
            for sensor in BAND_TABLE for b in BAND_TABLE[sensor]]


SENSOR_NAMES = {"s2": "Sentinel-2", "s1": "Sentinel-1", "rgb": "RGB"}


def parse_band_selection(text: str, sensors: Sequence[str], dataset: str) -> dict[str, tuple[str, ...]]:
    """``--bands B02,B03,B04,VV`` -> the bands kept per sensor, in stored order. Each item is
    a band name or a wavelength; a sensor of the corpus none of whose bands is named is an
    error (``--sensor`` leaves it out), as is a band the data does not hold."""
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise ConfigError("--bands must name bands, e.g. B02,B03,B04,B08")
    kept: dict[str, set[str]] = {s: set() for s in sensors}
    for item in items:
        owner = _owner(item, sensors)
        kept[owner].add(canonical_band(owner, item, stored_bands(owner), dataset))
    empty = [s for s, names in kept.items() if not names]
    if empty:
        sensor = empty[0]
        others = [s for s in sensors if s != sensor]
        hint = f" or index with --sensor {others[0]}" if others else ""
        raise ConfigError(f"--bands names no {SENSOR_NAMES.get(sensor, sensor)} band ({', '.join(stored_bands(sensor))}) "
                          f"of {dataset}; add some{hint}")
    return {s: tuple(b for b in stored_bands(s) if b in names) for s, names in kept.items()}


def _owner(item: str, sensors: Sequence[str]) -> str:
    """The sensor whose band table names ``item`` (a wavelength: the optical sensor)."""
    upper = _as_name(item)
    for sensor in sensors:
        if upper in {b.name.upper() for b in sensor_bands(sensor)}:
            return sensor
    optical = [s for s in sensors if s in ("s2", "rgb")]
    if WAVELENGTH.match(item.strip()) and optical:
        return optical[0]
    known = ", ".join(b for s in sensors for b in stored_bands(s))
    raise ConfigError(f"--bands: '{item}' is no band of the corpus' sensors ({known}) nor a wavelength (0.665, 665nm)")
