"""Band-adapter heads: the encoder's first layer widened to every band, built from the model's
own RGB kernel, as an adapter of the same registry and pipeline step."""

import json

import numpy as np
import pytest
import torch

from rsretrieve.datasets.base import Batch
from rsretrieve.embeddings import build_pipeline
from rsretrieve.encoders import EncoderSpec
from rsretrieve.errors import ConfigError
from tests.cli.test_cli import assert_user_error, invoke

TINY_VIT = EncoderSpec("open_clip", "rsretrieve-tiny", None, 0)


def _batch(sensor: str, n: int = 3) -> Batch:
    rng = np.random.default_rng(0)
    if sensor == "s2":
        images = rng.uniform(0, 5000, (n, 12, 120, 120)).astype(np.float32)
    else:
        images = np.stack([rng.uniform(-25, 0, (n, 120, 120)), rng.uniform(-32, -5, (n, 120, 120))], axis=1).astype(np.float32)
    return Batch(sensor, [f"k{i}" for i in range(n)], images, 0, (0,) * n, np.zeros((n, 2)))


@pytest.mark.parametrize("arch", ["rsretrieve-tiny", "RN50"])
def test_init_zero_gives_the_rgb_adapters_embeddings(arch: str) -> None:
    """Every band goes in, yet before training the head sees only B04, B03, B02 as the rgb
    adapter shows them: the same embeddings on the same encoder (ViT patch embedding and
    ResNet stem alike), to float precision."""
    spec = EncoderSpec("open_clip", arch, None, 0)
    rgb = build_pipeline(spec, {"s2": "rgb"}, ("s2",))
    head = build_pipeline(spec, {"s2": "patch-embed"}, ("s2",))
    batch = _batch("s2")
    np.testing.assert_allclose(head.embed(batch), rgb.embed(batch), atol=1e-6)
    conv = head.adapters["s2"].conv
    assert conv.in_channels == 12 and conv.weight.requires_grad
    assert head.describe()["adapters"] == {"s2": "patch-embed"}


def test_every_band_counts_once_the_head_is_not_zero() -> None:
    head = build_pipeline(TINY_VIT, {"s2": "patch-embed:init=mean"}, ("s2",))
    batch = _batch("s2", 1)
    before = head.embed(batch)
    batch.images[:, 7] += 3000  # B08, not one of the RGB stand-ins
    assert not np.allclose(head.embed(batch), before)
    rgb = build_pipeline(TINY_VIT, {"s2": "rgb"}, ("s2",))
    assert not np.allclose(head.embed(batch), rgb.embed(batch))


def test_sentinel1_takes_vv_and_vh_through_the_red_and_green_kernels() -> None:
    head = build_pipeline(TINY_VIT, {"s1": "patch-embed"}, ("s1",))
    conv = head.adapters["s1"].conv
    first = head.encoder.model.visual.conv1.weight
    torch.testing.assert_close(conv.weight[:, 0], first[:, 0])
    torch.testing.assert_close(conv.weight[:, 1], first[:, 1])
    assert np.isfinite(head.embed(_batch("s1"))).all()


def test_bad_parameters_and_encoders_without_a_first_layer() -> None:
    with pytest.raises(ConfigError, match="init must be one of zero, mean, got 'ones'"):
        build_pipeline(TINY_VIT, {"s2": "patch-embed:init=ones"}, ("s2",))
    with pytest.raises(ConfigError, match="parameters are key=value"):
        build_pipeline(TINY_VIT, {"s2": "patch-embed:init"}, ("s2",))
    from rsretrieve.adapters.heads import PatchEmbedHead

    class NoFirstLayer:  # an encoder without an open_clip visual.conv1 (a transformers model, say)
        spec = EncoderSpec("transformers", "org/model")
        model = torch.nn.Linear(2, 2)

    with pytest.raises(ConfigError, match=r"widens an open_clip model's visual.conv1 .*transformers:org/model has none"):
        PatchEmbedHead(("B02", "B03", "B04")).bind(NoFirstLayer())


def test_a_head_from_the_cli_is_recorded_in_the_manifest(sample_root, tmp_path) -> None:  # noqa: ANN001
    out = tmp_path / "idx"
    result = invoke("index", "--data", sample_root, "--model", "rsretrieve-tiny", "--s2-adapter", "patch-embed:init=mean",
                    "--s1-adapter", "patch-embed", "--limit", "6", "--out", out)
    assert result.exit_code == 0, result.output
    assert json.loads((out / "manifest.json").read_text())["adapters"] == {"s2": "patch-embed:init=mean", "s1": "patch-embed"}
    wrong = invoke("index", "--data", sample_root, "--model", "rsretrieve-tiny", "--s2-adapter", "patch-embd", "--out", out)
    assert_user_error(wrong, r"unknown band adapter 'patch-embd'.*patch-embed")


def test_the_wavelength_head_takes_any_subset_in_any_order() -> None:
    """Its kernel comes from the bands' wavelengths: the same bands in another order give the
    same embedding, a subset gives another, and a ResNet stem is refused."""
    from rsretrieve.adapters.heads import WavelengthHead

    batch = _batch("s2", 2)
    full = build_pipeline(TINY_VIT, {"s2": "wavelength"}, ("s2",))
    subset = build_pipeline(TINY_VIT, {"s2": "wavelength"}, ("s2",), bands="B02,B03,B04,B08")
    a, b = full.embed(batch), subset.embed(batch)
    assert a.shape == b.shape == (2, 64) and not np.allclose(a, b)
    head = subset.adapters["s2"]
    order = [3, 0, 2, 1]
    shuffled = WavelengthHead(tuple(head.bands[i] for i in order))
    shuffled.bind(subset.encoder)
    shuffled.conv.load_state_dict(head.conv.state_dict())  # one trained generator
    kept = torch.from_numpy(batch.images[:, [1, 2, 3, 7]])
    np.testing.assert_allclose(shuffled.embed(subset.encoder, kept[:, order]), head.embed(subset.encoder, kept), atol=1e-5)
    with pytest.raises(ConfigError, match=r"generates a ViT's square patch embedding; open_clip:RN50 .*ResNet stem"):
        build_pipeline(EncoderSpec("open_clip", "RN50", None, 0), {"s2": "wavelength"}, ("s2",))


def test_a_wavelength_head_trains_in_a_tower(tmp_path) -> None:  # noqa: ANN001
    from rsretrieve.datasets.fixtures.crisislandmark import generate_sample
    from rsretrieve.encoders.trained import DualEncoder, TowerConfig, load_model, read_model_config
    from rsretrieve.training import TrainConfig, train

    root = generate_sample(tmp_path / "clm", n_samples=40, seed=3, train_fraction=0.6)
    config = TrainConfig(epochs=1, batch_size=16, lr=3e-3, warmup_steps=1, freeze="encoder",
                         tower=TowerConfig(backbone="open_clip", model="rsretrieve-tiny"), adapters={"s2": "wavelength", "s1": "wavelength"})
    train(root, tmp_path / "run", config)
    model_config, _ = read_model_config(tmp_path / "run" / "last")
    torch.manual_seed(config.seed)
    start, end = DualEncoder(model_config), load_model(tmp_path / "run" / "last")
    before = start.towers["s2"].backbone.visual.conv1.embed.weight_generator.fc_weight.weight
    after = end.towers["s2"].backbone.visual.conv1.embed.weight_generator.fc_weight.weight
    assert not torch.allclose(before, after)
