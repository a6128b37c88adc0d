"""The band table: every band of every sensor named, placed and selectable by name or wavelength."""

import pytest

from rsretrieve.datasets.bands import BAND_TABLE, C_BAND_UM, canonical_band, stored_bands, wavelengths
from rsretrieve.datasets.sensors import BANDS
from rsretrieve.errors import ConfigError, DataError
from tests.cli.test_cli import invoke


def test_the_stored_bands_are_the_table_less_what_is_not_stored() -> None:
    assert len(BAND_TABLE["s2"]) == 13 and stored_bands("s2") == BANDS["s2"] and "B10" not in BANDS["s2"]
    assert stored_bands("s1") == ("VV", "VH") and stored_bands("rgb") == ("R", "G", "B")
    assert wavelengths("s2", ["B02", "B8A", "B12"]) == [0.49, 0.864, 2.2]
    assert wavelengths("s1", ["VV", "VH"], "dofa") == [3.75, 3.75]
    assert wavelengths("s1", ["VV"]) == [pytest.approx(55_465.8, abs=0.1)] == [pytest.approx(C_BAND_UM)]


@pytest.mark.parametrize(("given", "name"), [("B08", "B08"), ("b8a", "B8A"), ("B2", "B02"), ("0.842", "B08"),
                                             ("665nm", "B04"), ("1.6um", "B11"), ("2.19", "B12")])
def test_bands_are_chosen_by_name_or_wavelength(given: str, name: str) -> None:
    assert canonical_band("s2", given, BANDS["s2"], "data/clm") == name


def test_a_band_the_data_lacks_is_an_error_naming_band_and_dataset() -> None:
    with pytest.raises(DataError, match=r"band B10 \(1.373\) is not stored by any dataset rsretrieve reads: data/clm holds B01"):
        canonical_band("s2", "1.373", BANDS["s2"], "data/clm")
    with pytest.raises(DataError, match=r"band B08 \(B08\) is not among its bands: data/clm holds B02, B03, B04"):
        canonical_band("s2", "B08", ("B02", "B03", "B04"), "data/clm")
    with pytest.raises(ConfigError, match=r"no s2 band at 5.0"):
        canonical_band("s2", "5.0", BANDS["s2"], "data/clm")
    with pytest.raises(ConfigError, match=r"'B99' is neither a s2 band"):
        canonical_band("s2", "B99", BANDS["s2"], "data/clm")


def test_list_bands_shows_the_table() -> None:
    result = invoke("list", "bands")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert len(lines) == 1 + 13 + 2 + 3 and "B10" in result.stdout and "not stored" in result.stdout
    assert any(line.split()[:2] == ["s1", "VV"] and "3.75" in line for line in lines)
