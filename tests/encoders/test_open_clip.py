"""open_clip wrapper on a tiny random model: shapes, normalisation, identity, errors."""

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from rsretrieve.encoders import EncoderSpec, load_encoder
from rsretrieve.errors import ConfigError, ModelError
from tests.conftest import TINY


@pytest.fixture(scope="module")
def tiny():  # noqa: ANN201
    return load_encoder(TINY)


def test_embeddings_are_l2_normalised(tiny) -> None:  # noqa: ANN001
    images = tiny.encode_images(torch.rand(3, 3, 120, 120))
    texts = tiny.encode_texts(["water", "trees", "built"])
    assert images.shape == (3, tiny.embed_dim) and texts.shape == (3, tiny.embed_dim)
    assert images.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(images, axis=1), 1, rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(texts, axis=1), 1, rtol=1e-5)


def test_preprocess_resizes_and_normalises(tiny) -> None:  # noqa: ANN001
    x = tiny.preprocess(torch.full((1, 3, 60, 80), 0.5))
    assert tuple(x.shape[-2:]) == tiny.image_size
    expected = (0.5 - tiny.mean) / tiny.std
    torch.testing.assert_close(x[0, :, 10, 10], expected)


def test_random_init_is_deterministic_per_seed(tiny) -> None:  # noqa: ANN001
    again = load_encoder(TINY)
    other = load_encoder(EncoderSpec(backend="open_clip", model="rsretrieve-tiny", seed=1))
    assert again.weights_sha256 == tiny.weights_sha256 != other.weights_sha256
    np.testing.assert_array_equal(again.encode_texts(["x"]), tiny.encode_texts(["x"]))
    assert tiny.describe()["weights_sha256"] == tiny.weights_sha256


def test_local_safetensors_checkpoint_round_trip(tiny, tmp_path) -> None:  # noqa: ANN001
    path = tmp_path / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in tiny.model.state_dict().items()}, str(path))
    loaded = load_encoder(EncoderSpec(backend="open_clip", model="rsretrieve-tiny", pretrained=str(path), seed=5))
    assert loaded.weights_sha256 == tiny.weights_sha256


def test_unknown_model_suggests_a_name() -> None:
    with pytest.raises(ConfigError, match="unknown open_clip model 'ViT-B-23'. Did you mean 'ViT-B-32'"):
        load_encoder(EncoderSpec(backend="open_clip", model="ViT-B-23"))


def test_unknown_pretrained_tag_suggests_a_tag() -> None:
    with pytest.raises(ConfigError, match="pretrained tag for ViT-B-32 'opneai'. Did you mean 'openai'"):
        load_encoder(EncoderSpec(backend="open_clip", model="ViT-B-32", pretrained="opneai"))


def test_missing_checkpoint_file(tmp_path) -> None:  # noqa: ANN001
    with pytest.raises(ModelError, match="checkpoint file .*missing.pt not found"):
        load_encoder(EncoderSpec(backend="open_clip", model="rsretrieve-tiny", pretrained=str(tmp_path / "missing.pt")))


def test_offline_tag_says_what_to_download() -> None:
    with pytest.raises(ModelError, match="Download the Hugging Face repository timm/vit_base_patch32_clip_224.openai.*"
                                         "--model ViT-B-32-quickgelu --pretrained"):
        load_encoder(EncoderSpec(backend="open_clip", model="ViT-B-32-quickgelu", pretrained="openai"))


def test_offline_hub_id_says_what_to_do() -> None:
    with pytest.raises(ModelError, match="hf download org/model"):
        load_encoder(EncoderSpec(backend="open_clip", model="hf-hub:org/model"))


def test_unknown_backend() -> None:
    with pytest.raises(ConfigError, match="unknown encoder backend 'open-clip'. Did you mean 'open_clip'"):
        load_encoder(EncoderSpec(backend="open-clip", model="rsretrieve-tiny"))


def test_quickgelu_weights_in_a_gelu_architecture_are_refused_before_any_download() -> None:
    from rsretrieve.errors import ConfigError

    with pytest.raises(ConfigError, match="'openai' were trained with QuickGELU, which ViT-B-32 does not use.*--model ViT-B-32-quickgelu"):
        load_encoder(EncoderSpec("open_clip", "ViT-B-32", "openai"))


def test_the_shipped_openai_job_uses_the_quickgelu_architecture() -> None:
    from pathlib import Path

    from rsretrieve.config import IndexJob

    job = IndexJob.load(Path(__file__).resolve().parents[2] / "configs" / "index" / "vit-b-32-openai-hnsw.yaml", {})
    assert (job.model, job.pretrained) == ("ViT-B-32-quickgelu", "openai")
