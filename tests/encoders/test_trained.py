"""The trained-model backend: the shipped default, model folders, and their guards."""

import json
import shutil

import numpy as np
import pytest
import torch

from rsretrieve.datasets.sensors import BANDS
from rsretrieve.embeddings import build_pipeline
from rsretrieve.encoders import EncoderSpec, load_encoder
from rsretrieve.encoders.trained import DEFAULT_MODEL_DIR, DualEncoder, ModelConfig, read_model_config, save_model
from rsretrieve.errors import ConfigError, ModelError


@pytest.fixture(scope="module")
def default():  # noqa: ANN201
    return load_encoder(EncoderSpec())


def test_default_model_is_shipped_small_and_pickle_free() -> None:
    files = sorted(p.name for p in DEFAULT_MODEL_DIR.iterdir())
    assert files == ["config.json", "model.safetensors"]
    assert (DEFAULT_MODEL_DIR / "model.safetensors").stat().st_size < 5_000_000
    config, record = read_model_config(DEFAULT_MODEL_DIR)
    assert set(config.towers) == {"s1", "s2"} and config.text.kind == "minilm"
    assert record["best_epoch"] >= 1


def test_towers_embed_both_sensors_into_the_text_space(default) -> None:  # noqa: ANN001
    assert default.adapters_bundled and default.embed_dim == 384
    for sensor in ("s1", "s2"):
        bands = BANDS[sensor]
        vectors = default.encode_images(torch.rand(2, len(bands), 120, 120), sensor)
        assert vectors.shape == (2, 384)
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1, rtol=1e-5)
    assert default.encode_texts(["water"]).shape == (1, 384)
    assert default.describe()["towers"]["s2"]["adapter"] == "all-bands"


def test_bundled_adapters_refuse_explicit_ones() -> None:
    with pytest.raises(ConfigError, match="holds its own band adapters per sensor; drop --s2-adapter rgb"):
        build_pipeline(EncoderSpec(), {"s2": "rgb"})
    pipeline = build_pipeline(EncoderSpec())
    assert pipeline.adapters == {} and pipeline.adapter_names == {"s2": "bundled", "s1": "bundled"}


def test_model_folder_errors(tmp_path) -> None:  # noqa: ANN001
    with pytest.raises(ModelError, match="model folder .*nope not found"):
        load_encoder(EncoderSpec("rsretrieve", str(tmp_path / "nope")))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="not an rsretrieve model folder"):
        load_encoder(EncoderSpec("rsretrieve", str(tmp_path / "empty")))
    bad = tmp_path / "bad"
    shutil.copytree(DEFAULT_MODEL_DIR, bad)
    data = json.loads((bad / "config.json").read_text())
    data["config"]["towers"]["s2"]["widht"] = 8
    (bad / "config.json").write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="towers.s2: unknown key 'widht'. Did you mean 'width'"):
        load_encoder(EncoderSpec("rsretrieve", str(bad)))


def test_weights_that_do_not_fit_the_config(tmp_path) -> None:  # noqa: ANN001
    config, _ = read_model_config(DEFAULT_MODEL_DIR)
    other = ModelConfig(config.text, config.embed_dim, {"s2": config.towers["s2"]})
    save_model(DualEncoder(other), tmp_path / "m", {})
    data = json.loads((DEFAULT_MODEL_DIR / "config.json").read_text())
    (tmp_path / "m" / "config.json").write_text(json.dumps(data))  # claims two towers
    with pytest.raises(ModelError, match="weights do not fit"):
        load_encoder(EncoderSpec("rsretrieve", str(tmp_path / "m")))


def test_missing_sensor_tower(tmp_path) -> None:  # noqa: ANN001
    config, _ = read_model_config(DEFAULT_MODEL_DIR)
    save_model(DualEncoder(ModelConfig(config.text, config.embed_dim, {"s2": config.towers["s2"]})), tmp_path / "m", {})
    encoder = load_encoder(EncoderSpec("rsretrieve", str(tmp_path / "m")))
    with pytest.raises(ConfigError, match="image towers take s2 bands, not s1 images"):
        encoder.encode_images(torch.zeros(1, 2, 120, 120), "s1")
