"""CrisisLandMark label normalisation: CORINE (CLC) names -> Dynamic World (DW) names.

The authors lower-case labels and map CLC to DW before building captions (their loader in
DarthReca/closp, dataset/mapping.py); crisis event tags map to crisis keywords.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable

DW_CLASSES: tuple[str, ...] = (
    "trees", "crops", "shrub and scrub", "water", "grass", "built",
    "flooded vegetation", "bare", "snow and ice",
)
CRISIS_CLASSES: tuple[str, ...] = ("flooded area", "earthquake damage", "burned area")
CLASSES: tuple[str, ...] = DW_CLASSES + CRISIS_CLASSES

CLC_TO_DW: dict[str, str] = {
    "continuous urban fabric": "built",
    "discontinuous urban fabric": "built",
    "industrial or commercial units": "built",
    "road and rail networks and associated land": "built",
    "port areas": "built",
    "airports": "built",
    "mineral extraction sites": "bare",
    "dump sites": "bare",
    "construction sites": "bare",
    "green urban areas": "grass",
    "sport and leisure facilities": "grass",
    "non-irrigated arable land": "crops",
    "permanently irrigated land": "crops",
    "rice fields": "flooded vegetation",
    "vineyards": "crops",
    "fruit trees and berry plantations": "crops",
    "olive groves": "crops",
    "pastures": "grass",
    "annual crops associated with permanent crops": "crops",
    "complex cultivation patterns": "crops",
    "land principally occupied by agriculture, with significant areas of natural vegetation": "crops",
    "agro-forestry areas": "trees",
    "broad-leaved forest": "trees",
    "coniferous forest": "trees",
    "mixed forest": "trees",
    "natural grassland": "grass",
    "moors and heathland": "shrub and scrub",
    "sclerophyllous vegetation": "shrub and scrub",
    "transitional woodland/shrub": "shrub and scrub",
    "beaches, dunes, sands": "bare",
    "bare rock": "bare",
    "sparsely vegetated areas": "bare",
    "burnt areas": "burned area",
    "glaciers and perpetual snow": "snow and ice",
    "inland marshes": "flooded vegetation",
    "peatbogs": "flooded vegetation",
    "salt marshes": "flooded vegetation",
    "salines": "bare",
    "intertidal flats": "bare",
    "water courses": "water",
    "water bodies": "water",
    "coastal lagoons": "water",
    "estuaries": "water",
    "sea and ocean": "water",
}
# Original event tags kept by the crisis sources (dataset card) and their crisis keyword.
EVENT_TAGS: dict[str, str] = {
    "wildfire": "burned area",
    "fire": "burned area",
    "burned": "burned area",
    "flooding": "flooded area",
    "flood": "flooded area",
    "flooded": "flooded area",
    "earthquake": "earthquake damage",
}


def normalise_label(label: str) -> str:
    """Lower-case a raw label and map CLC names and event tags to the DW/crisis vocabulary."""
    name = " ".join(label.strip().lower().split())
    return CLC_TO_DW.get(name) or EVENT_TAGS.get(name) or name


def normalise_labels(labels: Iterable[str]) -> list[str]:
    """Normalise and de-duplicate, keeping first-seen order (the first label is the dominant)."""
    seen: dict[str, None] = {}
    for label in labels:
        seen.setdefault(normalise_label(label), None)
    return list(seen)


def parse_labels(value: object) -> tuple[list[str] | None, bool]:
    """A ``labels`` field as a list of strings, and whether it was one joined string.

    The release stores a list. A copy may store one string instead: a JSON list, labels
    joined by ``;`` or ``|``, or joined by ``", "`` (CORINE names hold commas themselves, such
    as "beaches, dunes, sands": the longest known name is taken first). ``(None, False)``
    when the value is neither a list of strings nor a string."""
    if isinstance(value, (list, tuple)):
        return (list(value), False) if all(isinstance(x, str) for x in value) else (None, False)
    if not isinstance(value, str):
        return None, False
    text = value.strip()
    if text.startswith("["):
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = None
        if isinstance(parsed, list) and all(isinstance(x, str) for x in parsed):
            return parsed, True
    if ";" in text or "|" in text:
        return [part.strip() for part in re.split(r"[;|]", text) if part.strip()], True
    pieces = [part.strip() for part in text.split(",")]
    out: list[str] = []
    i = 0
    while i < len(pieces):
        j = next(j for j in range(len(pieces), i, -1) if j == i + 1 or normalise_label(", ".join(pieces[i:j])) in CLASSES)
        out.append(", ".join(pieces[i:j]))
        i = j
    if len(out) > 1 and all(normalise_label(label) in CLASSES for label in out):
        return out, True
    return [value], False
