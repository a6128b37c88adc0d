"""Llama3-MS-CLIP against its authors' recipe: open_clip's own ViT-B-16 with conv1 widened as
their factory widens it, their file layout, and torchvision's transforms as their
get_preprocess composes them, on seeded random weights (the published ones cannot be
downloaded here)."""

from pathlib import Path

import numpy as np
import pytest
import torch

from rsretrieve.encoders import EncoderSpec, load_encoder
from rsretrieve.errors import ModelError
from tests.cli.test_cli import assert_user_error, invoke

MEANS = [1925.161, 2183.128, 2338.041, 2667.254, 3233.633, 3460.96, 3555.569, 3619.542, 3406.497, 2841.645]
STDS = [1205.586, 1223.713, 1399.638, 1403.298, 1378.513, 1434.924, 1491.141, 1454.089, 1473.248, 1365.08]


def _reference_model() -> torch.nn.Module:
    """open_clip ViT-B-16, conv1 widened to 10 channels the authors' way (extend_weights: RGB
    kernel in BGR order first, zeros after), then 'trained': every band's kernel random."""
    import open_clip

    torch.manual_seed(11)
    model = open_clip.create_model("ViT-B-16", pretrained=None)
    old = model.visual.conv1.weight.detach()
    conv = torch.nn.Conv2d(10, old.shape[0], 16, 16, bias=False)
    kernel = torch.zeros(old.shape[0], 10, 16, 16)
    kernel[:, 0], kernel[:, 1], kernel[:, 2] = old[:, 2], old[:, 1], old[:, 0]
    kernel[:, 3:] = torch.randn(old.shape[0], 7, 16, 16) * 0.02
    conv.weight.data = kernel
    model.visual.conv1 = conv
    return model.eval()


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, torch.nn.Module]:
    """The file as the authors' Lightning module saves it (the shared model under three names)."""
    model = _reference_model()
    state = {}
    for prefix in ("clip_base_model.model.", "image_encoder.model.", "text_encoder.model."):
        state.update({prefix + k: v for k, v in model.state_dict().items()})
    state["temperature"] = torch.tensor(0.07)
    path = tmp_path_factory.mktemp("msclip") / "Llama3_MS_CLIP_weights.pt"
    torch.save(state, path)
    return path, model


def _authors_preprocess(image_hwc: np.ndarray) -> torch.Tensor:
    from torchvision import transforms

    return transforms.Compose([
        transforms.Lambda(lambda x: x.astype(np.float32)),
        transforms.ToTensor(),
        transforms.Resize(size=[224], interpolation=transforms.InterpolationMode.BICUBIC),
        transforms.CenterCrop([224]),
        transforms.Normalize(mean=[m - 1000 for m in MEANS], std=STDS),
    ])(image_hwc)


@pytest.fixture(scope="module")
def encoder(published):  # noqa: ANN001, ANN201
    return load_encoder(EncoderSpec("msclip", "llama3-ms-clip", str(published[0])))


def test_images_and_texts_equal_the_authors_forward(published, encoder) -> None:  # noqa: ANN001
    import open_clip

    path, reference = published
    rng = np.random.default_rng(0)
    patches = rng.uniform(0, 6000, size=(2, 12, 120, 120)).astype(np.float32)  # the 12 stored bands, digital numbers
    got = encoder.encode_images(torch.from_numpy(patches), "s2")
    ten = [np.delete(p.transpose(1, 2, 0), [0, 9], axis=2) for p in patches]  # the authors drop B01 and B09
    with torch.no_grad():
        expected = torch.nn.functional.normalize(reference.encode_image(torch.stack([_authors_preprocess(x) for x in ten])), dim=-1)
    np.testing.assert_allclose(got, expected.numpy(), atol=2e-5)
    texts = ["flooded farmland", "a burnt forest"]
    with torch.no_grad():
        text_ref = torch.nn.functional.normalize(reference.encode_text(open_clip.get_tokenizer("ViT-B-16")(texts)), dim=-1)
    np.testing.assert_allclose(encoder.encode_texts(texts), text_ref.numpy(), atol=1e-5)
    assert encoder.describe()["temperature"] == pytest.approx(0.07) and encoder.embed_dim == 512


def test_band_order_matters(encoder) -> None:  # noqa: ANN001
    """Swapping two stored bands changes the embedding: the selection is by name, not by luck."""
    patches = np.random.default_rng(1).uniform(0, 6000, size=(1, 12, 120, 120)).astype(np.float32)
    swapped = patches.copy()
    swapped[:, [1, 3]] = swapped[:, [3, 1]]
    assert not np.allclose(encoder.encode_images(torch.from_numpy(patches)), encoder.encode_images(torch.from_numpy(swapped)))


def test_a_file_that_is_not_the_authors_layout_is_named(published, tmp_path, monkeypatch) -> None:  # noqa: ANN001
    """Named before the model is built (seconds)."""
    path, model = published
    monkeypatch.setattr("rsretrieve.encoders.msclip.build_model", lambda *a: pytest.fail("the model was built"))
    plain = tmp_path / "plain.pt"
    torch.save(model.state_dict(), plain)
    with pytest.raises(ModelError, match=r"no key starts with 'clip_base_model.model.'"):
        load_encoder(EncoderSpec("msclip", "llama3-ms-clip", str(plain)))
    state = torch.load(path, weights_only=True)
    state["clip_base_model.model.visual.conv1.weight"] = state["clip_base_model.model.visual.conv1.weight"][:, :3]
    for alias in ("image_encoder", "text_encoder"):
        state[f"{alias}.model.visual.conv1.weight"] = state["clip_base_model.model.visual.conv1.weight"]
    rgb = tmp_path / "rgb.pt"
    torch.save(state, rgb)
    with pytest.raises(ModelError, match=r"visual.conv1.weight has shape \(768, 3, 16, 16\); Llama3-MS-CLIP takes 10 bands"):
        load_encoder(EncoderSpec("msclip", "llama3-ms-clip", str(rgb)))


def test_sentinel1_patches_are_refused_before_the_model_loads(published, sample_root, tmp_path, monkeypatch) -> None:  # noqa: ANN001
    path, _ = published
    monkeypatch.setattr("rsretrieve.encoders.msclip.build_model", lambda *a: pytest.fail("the model was built"))
    result = invoke("index", "--data", sample_root, "--model", "llama3-ms-clip", "--pretrained", path, "--out", tmp_path / "idx")
    assert_user_error(result, r"msclip:llama3-ms-clip is a Sentinel-2 model: it has no input for Sentinel-1 patches; "
                              r"index with --sensor s2")


def test_missing_bands_are_filled_with_their_mean(encoder) -> None:  # noqa: ANN001
    """--bands B02,B03,B04,B08: the six other model bands get their mean, zero after
    standardisation (the authors' channel_mean fill); the manifest names them."""
    from rsretrieve.datasets.base import Batch
    from rsretrieve.embeddings import ImagePipeline

    patches = np.random.default_rng(4).uniform(0, 6000, size=(1, 12, 120, 120)).astype(np.float32)
    kept = ("B02", "B03", "B04", "B08")
    pipeline = ImagePipeline(encoder, {}, {"s2": "bundled"}, bands={"s2": kept})
    got = pipeline.embed(Batch("s2", ["a"], patches, 0, (0,), np.zeros((1, 2))))
    filled = patches.copy()
    stored = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12")
    for band, mean in zip(("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12"), MEANS):
        if band not in kept:
            filled[:, stored.index(band)] = mean - 1000
    np.testing.assert_allclose(got, encoder.encode_images(torch.from_numpy(filled), "s2"), atol=1e-6)
    assert pipeline.band_report()["s2"]["filled"] == ["B05", "B06", "B07", "B8A", "B11", "B12"]
