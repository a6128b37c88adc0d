"""The CLIP cards load their published checkpoint layouts with the right architecture and give
the forward of open_clip's own loader; OpenAI-initialised models are QuickGELU models."""

import functools
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from rsretrieve.encoders import load_encoder
from rsretrieve.errors import ModelError
from rsretrieve.zoo import get_card

open_clip = pytest.importorskip("open_clip")
TEXTS = ["satellite image of water", "a river crossing farmland"]


@pytest.fixture(scope="module")
def quickgelu_state(tmp_path_factory) -> Path:  # noqa: ANN001
    """A seeded random ViT-B-32-quickgelu saved as a plain state dict (RS5M_ViT-B-32.pt layout)."""
    torch.manual_seed(0)
    model = open_clip.create_model("ViT-B-32-quickgelu", pretrained=None)
    path = tmp_path_factory.mktemp("ckpt") / "RS5M_ViT-B-32.pt"
    torch.save({k: v.half() for k, v in model.state_dict().items()}, path)
    return path


@functools.cache
def reference(arch: str, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """open_clip's own loader and forward on the resized, normalised test pixels."""
    pixels = PREPROCESSED[arch]
    model = open_clip.create_model(arch, pretrained=str(path), weights_only=True).eval()
    tokenizer = open_clip.get_tokenizer(arch)
    with torch.no_grad():
        images = torch.nn.functional.normalize(model.encode_image(pixels), dim=-1).numpy()
        texts = torch.nn.functional.normalize(model.encode_text(tokenizer(TEXTS)), dim=-1).numpy()
    return images, texts


PREPROCESSED: dict[str, torch.Tensor] = {}


def check(encoder, arch: str, weights: Path) -> None:  # noqa: ANN001
    pixels = torch.rand(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    ours_images = encoder.encode_images(pixels)
    PREPROCESSED[arch] = encoder.preprocess(pixels)
    images, texts = reference(arch, weights)
    np.testing.assert_allclose(ours_images, images, atol=1e-5)
    np.testing.assert_allclose(encoder.encode_texts(TEXTS), texts, atol=1e-5)


def test_openai_card_loads_without_the_quickgelu_mismatch_warning(quickgelu_state, monkeypatch) -> None:  # noqa: ANN001
    import rsretrieve.encoders.open_clip as backend

    monkeypatch.setattr(open_clip.factory, "download_pretrained", lambda cfg, cache_dir=None: str(quickgelu_state))
    monkeypatch.setattr(backend, "_cached", lambda hub: True)  # as if it were in the Hugging Face cache
    card = get_card("clip-vit-b-32-openai")
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*QuickGELU mismatch.*")
        encoder = load_encoder(card.spec())
    check(encoder, "ViT-B-32-quickgelu", quickgelu_state)
    # what the card avoids: open_clip's plain ViT-B-32 is a GELU model, the openai tag a QuickGELU one
    assert open_clip.get_pretrained_cfg("ViT-B-32", "openai")["quick_gelu"] is True
    assert not open_clip.get_model_config("ViT-B-32").get("quick_gelu", False)


def test_an_uncached_tag_offline_fails_at_once_with_where_to_get_it(monkeypatch) -> None:  # noqa: ANN001
    import time

    import rsretrieve.encoders.open_clip as backend

    monkeypatch.setattr(backend, "hub_reachable", lambda timeout=3.0: False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    started = time.perf_counter()
    with pytest.raises(ModelError, match=r"not in the local cache and no network is reachable. Download the Hugging Face "
                                         r"repository timm/vit_base_patch32_clip_224.openai .* --pretrained /path/to/"):
        load_encoder(get_card("clip-vit-b-32-openai").spec())
    assert time.perf_counter() - started < 5


def test_georsclip_card_is_a_quickgelu_model_on_a_plain_state_dict(quickgelu_state) -> None:  # noqa: ANN001
    encoder = load_encoder(get_card("georsclip-vit-b-32").spec(str(quickgelu_state)))
    assert encoder.spec.model == "ViT-B-32-quickgelu"
    check(encoder, "ViT-B-32-quickgelu", quickgelu_state)


def test_skyclip_training_checkpoint_inside_its_release_zip(tmp_path) -> None:  # noqa: ANN001
    torch.manual_seed(2)
    model = open_clip.create_model("ViT-B-32", pretrained=None)
    pt = tmp_path / "epoch_20.pt"
    torch.save({"epoch": 20, "name": "SkyCLIP_ViT_B32_top50pct",
                "state_dict": {f"module.{k}": v.half() for k, v in model.state_dict().items()}}, pt)
    release = tmp_path / "SkyCLIP_ViT_B32_top50pct.zip"
    with zipfile.ZipFile(release, "w") as archive:
        archive.write(pt, "SkyCLIP_ViT_B32_top50pct/epoch_20.pt")
    encoder = load_encoder(get_card("skyclip-vit-b-32").spec(str(release)))
    check(encoder, "ViT-B-32", pt)
    (tmp_path / "two.zip").write_bytes(b"")
    with zipfile.ZipFile(tmp_path / "two.zip", "w") as archive:  # refused by its listing: the bytes are not read
        archive.writestr("a/epoch_10.pt", b"not read")
        archive.writestr("a/epoch_20.pt", b"not read")
    with pytest.raises(ModelError, match="two.zip: a zip archive with 2 weights files"):
        load_encoder(get_card("skyclip-vit-b-32").spec(str(tmp_path / "two.zip")))
    with open(tmp_path / "code.pt", "wb") as handle:  # a pickle that is not a plain state dict
        torch.save({"state_dict": {"x": torch.zeros(1)}, "fn": print}, handle)
    with pytest.raises(ModelError, match=r"code.pt into ViT-B-32 with weights_only=True"):
        load_encoder(get_card("skyclip-vit-b-32").spec(str(tmp_path / "code.pt")))
