"""Band adapters: exact channel values, registry behaviour and third-party plugins."""

import numpy as np
import pytest
import torch

from rsretrieve.adapters import ADAPTERS, build_adapter, register_adapter
from rsretrieve.datasets.sensors import S1_BANDS, S2_BANDS
from rsretrieve.errors import ConfigError


def _s2(values: dict[str, float]) -> torch.Tensor:
    x = torch.zeros(1, len(S2_BANDS), 4, 4)
    for band, value in values.items():
        x[0, S2_BANDS.index(band)] = value
    return x


def test_rgb_selects_b04_b03_b02_and_scales_reflectance() -> None:
    out = build_adapter("rgb", S2_BANDS)(_s2({"B04": 1500, "B03": 600, "B02": 9000, "B08": 5000}))
    assert out.shape == (1, 3, 4, 4)
    np.testing.assert_allclose(out[0, :, 0, 0].numpy(), [0.5, 0.2, 1.0], rtol=1e-6)  # 0.15/0.3, 0.06/0.3, clipped


def test_false_color_uses_nir_red_green() -> None:
    out = build_adapter("false-color", S2_BANDS)(_s2({"B08": 2000, "B04": 1000, "B03": 400}))
    np.testing.assert_allclose(out[0, :, 0, 0].numpy(), [0.5, 0.25, 0.1], rtol=1e-6)


def test_sar_composite_in_db() -> None:
    x = torch.tensor([-10.0, -18.5]).view(1, 2, 1, 1)  # VV, VH in dB
    out = build_adapter("sar", S1_BANDS)(x)[0, :, 0, 0].numpy()
    np.testing.assert_allclose(out, [15 / 25, 13.5 / 27, 8.5 / 15], rtol=1e-6)


def test_sar_from_linear_power_matches_db() -> None:
    db = torch.tensor([-10.0, -20.0]).view(1, 2, 1, 1)
    linear = 10 ** (db / 10)
    torch.testing.assert_close(build_adapter("sar", S1_BANDS, db=False)(linear), build_adapter("sar", S1_BANDS)(db))


@pytest.mark.parametrize(("bands", "fixed"), [(S2_BANDS, "rgb"), (S1_BANDS, "sar")])
def test_linear_starts_as_the_fixed_selection_and_is_trainable(bands, fixed) -> None:  # noqa: ANN001
    x = torch.rand(2, len(bands), 5, 5) * (3000 if fixed == "rgb" else -20)
    linear, reference = build_adapter("linear", bands), build_adapter(fixed, bands)
    torch.testing.assert_close(linear(x).clamp(0, 1), reference(x))
    assert all(p.requires_grad for p in linear.parameters())
    assert not any(p.requires_grad for p in reference.parameters())


def test_adapter_needs_its_bands() -> None:
    with pytest.raises(ConfigError, match="'rgb' needs bands B04, B03, B02; this input has VV, VH"):
        build_adapter("rgb", S1_BANDS)
    with pytest.raises(ConfigError, match="'sar' needs bands VV, VH"):
        build_adapter("sar", S2_BANDS)


def test_unknown_adapter_and_bad_parameters() -> None:
    with pytest.raises(ConfigError, match="unknown band adapter 'rbg'. Did you mean 'rgb'"):
        build_adapter("rbg", S2_BANDS)
    with pytest.raises(ConfigError, match="band adapter 'rgb': bad parameters"):
        build_adapter("rgb", S2_BANDS, gamma=2)


def test_third_party_adapter_registers_without_editing_the_package() -> None:
    @register_adapter("test-gray")
    def gray(bands: tuple[str, ...]) -> torch.nn.Module:
        class Gray(torch.nn.Module):
            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return x.mean(1, keepdim=True).expand(-1, 3, -1, -1)

        return Gray()

    try:
        assert "test-gray" in ADAPTERS.names()
        out = build_adapter("test-gray", S1_BANDS)(torch.ones(1, 2, 3, 3))
        assert out.shape == (1, 3, 3, 3)
    finally:
        ADAPTERS._entries.pop("test-gray")


def test_all_bands_keeps_every_band_at_order_one() -> None:
    out = build_adapter("all-bands", S2_BANDS)(_s2({"B08": 5000, "B12": 1000}))
    assert out.shape == (1, 12, 4, 4)
    assert out[0, S2_BANDS.index("B08"), 0, 0] == pytest.approx(0.5)
    assert out[0, S2_BANDS.index("B12"), 0, 0] == pytest.approx(0.1)
    sar = build_adapter("all-bands", S1_BANDS)(torch.tensor([-15.0, -25.0]).view(1, 2, 1, 1))
    np.testing.assert_allclose(sar[0, :, 0, 0].numpy(), [0.0, -1.0], atol=1e-6)
    with pytest.raises(ConfigError, match="'all-bands' knows Sentinel-1 and Sentinel-2 bands"):
        build_adapter("all-bands", ("R", "G", "B"))


def test_an_unknown_adapter_says_how_plugins_are_found_and_a_wrong_sensor_is_refused_before_loading(monkeypatch) -> None:  # noqa: ANN001
    from rsretrieve.embeddings import build_pipeline
    from rsretrieve.encoders import EncoderSpec

    with pytest.raises(ConfigError, match=r"unknown band adapter 'swir'.*entry-point group 'rsretrieve.adapters'"):
        ADAPTERS.get("swir")
    monkeypatch.setattr("rsretrieve.embeddings.load_encoder", lambda *a: pytest.fail("the encoder was loaded"))
    with pytest.raises(ConfigError, match=r"band adapter 'rgb' needs bands B04, B03, B02; this input has VV, VH"):
        build_pipeline(EncoderSpec("open_clip", "rsretrieve-tiny", None, 0), {"s1": "rgb"}, ("s1",))
