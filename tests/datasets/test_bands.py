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


def test_a_selection_names_bands_of_every_sensor_it_keeps() -> None:
    from rsretrieve.datasets.bands import parse_band_selection

    assert parse_band_selection("B2,b03,0.665,842nm,VV", ("s2", "s1"), "d") == {"s2": ("B02", "B03", "B04", "B08"), "s1": ("VV",)}
    assert parse_band_selection("B08,B04", ("s2",), "d") == {"s2": ("B04", "B08")}  # stored order
    with pytest.raises(ConfigError, match=r"--bands names no Sentinel-1 band \(VV, VH\) of d; add some or index with --sensor s2"):
        parse_band_selection("B02,B03", ("s2", "s1"), "d")
    with pytest.raises(ConfigError, match=r"'HH' is no band of the corpus' sensors"):
        parse_band_selection("B02,HH", ("s2", "s1"), "d")


def test_bands_from_the_cli_per_kind_of_model(sample_root, tmp_path) -> None:  # noqa: ANN001
    """Adapters and heads are built on the kept bands; an adapter that needs a dropped band, and
    a model that takes no subset, are refused before anything loads; the manifest records it."""
    import json

    from tests.cli.test_cli import assert_user_error

    out = tmp_path / "idx"
    rgb = invoke("index", "--data", sample_root, "--model", "rsretrieve-tiny", "--sensor", "s2", "--bands", "B08,B11",
                 "--out", out)
    assert_user_error(rgb, r"band adapter 'rgb' needs bands B04, B03, B02; this input has B08, B11 \(--bands kept B08, B11 of Sentinel-2\)")
    closp = invoke("index", "--data", sample_root, "--model", "random", "--bands", "B02,VV", "--out", out)
    assert_user_error(closp, r"--bands: random:random holds its own band adapters and takes no band subset")
    head = invoke("index", "--data", sample_root, "--model", "rsretrieve-tiny", "--sensor", "s2", "--bands", "B08,B11,B12",
                  "--s2-adapter", "patch-embed:init=mean", "--limit", "4", "--out", out)
    assert head.exit_code == 0, head.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["bands"] == {"s2": {"kept": ["B08", "B11", "B12"], "filled": []}}
