import pytest

from rsretrieve.datasets.labels import CLASSES, CLC_TO_DW, normalise_label, normalise_labels
from rsretrieve.datasets.sensors import parse_sensor_filter, sensor_of_key
from rsretrieve.errors import ConfigError, DataError


@pytest.mark.parametrize(
    ("key", "sensor"),
    [("benv2s2_000001", "s2"), ("S2A_cabuar_12", "s2"), ("sen2flood_7", "s2"),
     ("benv2s1_x", "s1"), ("mmflood-3", "s1"), ("sen1flood_0", "s1"), ("quakeset_9", "s1")],
)
def test_sensor_from_source_name(key: str, sensor: str) -> None:
    assert sensor_of_key(key) == sensor


def test_unknown_or_ambiguous_key_is_an_error() -> None:
    with pytest.raises(DataError, match="'foo_1' names no known source"):
        sensor_of_key("foo_1")
    with pytest.raises(DataError, match="both sensors"):
        sensor_of_key("benv2s1_benv2s2")


def test_sensor_filter() -> None:
    assert parse_sensor_filter("all") == ("s2", "s1")
    assert parse_sensor_filter("S1") == ("s1",)
    with pytest.raises(ConfigError, match="unknown sensor 's3'"):
        parse_sensor_filter("s3")


def test_clc_mapping_covers_the_notes_and_lands_in_the_vocabulary() -> None:
    assert len(CLC_TO_DW) == 44
    assert set(CLC_TO_DW.values()) <= set(CLASSES)
    assert normalise_label("Land principally occupied by agriculture, with significant areas of natural vegetation") == "crops"
    assert normalise_label("  Transitional woodland/shrub ") == "shrub and scrub"
    assert normalise_label("Rice fields") == "flooded vegetation"


def test_normalise_labels_dedupes_and_maps_event_tags() -> None:
    raw = ["Water bodies", "Sea and ocean", "flooding", "Flooded Vegetation", "Something new"]
    assert normalise_labels(raw) == ["water", "flooded area", "flooded vegetation", "something new"]
