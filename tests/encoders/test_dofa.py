"""DOFA-CLIP against torchgeo's own DOFA class (torchgeo 0.8.1's models/dofa.py, loaded alone:
importing torchgeo whole needs geopandas, rasterio and lightning) and torchgeo's DOFA_CLIP
text side written out as torchgeo 0.9 builds it, on seeded random weights in the published
file layout."""

import importlib.util
import math
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from rsretrieve.encoders import EncoderSpec, load_encoder
from rsretrieve.errors import ModelError

S2_WAVES = [0.44, 0.49, 0.56, 0.665, 0.705, 0.74, 0.783, 0.832, 0.864, 0.945, 1.61, 2.20]


def torchgeo_dofa_module() -> types.ModuleType:
    """torchgeo's dofa.py as it is, its two package-level imports (kornia augmentations and
    torchgeo.transforms, used only for its default transforms) stubbed."""
    root = Path(importlib.util.find_spec("torchgeo").submodule_search_locations[0])
    stubs = {"torchgeo_ref": [str(root)], "torchgeo_ref.models": [str(root / "models")], "torchgeo_ref.transforms": None,
             "kornia": None, "kornia.augmentation": None}
    for name, path in stubs.items():
        if name not in sys.modules:
            module = types.ModuleType(name)
            if path:
                module.__path__ = path
            sys.modules[name] = module
    sys.modules["torchgeo_ref.transforms"].AugmentationSequential = lambda *a, **k: None
    sys.modules["kornia"].augmentation = sys.modules["kornia.augmentation"]
    sys.modules["kornia.augmentation"].CenterCrop = lambda *a, **k: None
    spec = importlib.util.spec_from_file_location("torchgeo_ref.models.dofa", root / "models" / "dofa.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class TorchgeoTextTransformer(torch.nn.Module):
    """torchgeo 0.9's DOFA-CLIP text side, as its source builds it (0.9 needs Python 3.12)."""

    def __init__(self) -> None:
        super().__init__()
        self.token_embedding = torch.nn.Embedding(49408, 512)
        self.positional_embedding = torch.nn.Parameter(torch.randn(77, 512) * 0.01)
        layer = torch.nn.TransformerEncoderLayer(d_model=512, nhead=8, dim_feedforward=2048, dropout=0.0, activation="gelu",
                                                 batch_first=True, norm_first=True)
        self.transformer = torch.nn.TransformerEncoder(layer, num_layers=6, enable_nested_tensor=False)
        self.ln_final = torch.nn.LayerNorm(512)
        self.text_projection = torch.nn.Parameter(torch.randn(512, 512) * 0.02)

    def forward(self, text: torch.Tensor) -> torch.Tensor:
        x = self.token_embedding(text) + self.positional_embedding.unsqueeze(0)
        return torch.matmul(self.ln_final(self.transformer(x))[:, 0, :], self.text_projection)


class TorchgeoDofaClip(torch.nn.Module):
    def __init__(self, dofa: types.ModuleType) -> None:
        super().__init__()
        self.image_encoder = dofa.DOFA(embed_dim=768, depth=12, num_heads=12, num_classes=0, global_pool=True)
        self.image_projection = torch.nn.Linear(768, 512, bias=False)
        self.text_encoder = TorchgeoTextTransformer()
        self.logit_scale = torch.nn.Parameter(torch.tensor(2.6592))


@pytest.fixture(scope="module")
def reference() -> TorchgeoDofaClip:
    torch.manual_seed(5)
    model = TorchgeoDofaClip(torchgeo_dofa_module())
    with torch.no_grad():
        model.image_encoder.pos_embed.normal_(std=0.02)  # a stored buffer in the file
        model.image_encoder.cls_token.normal_(std=0.02)
    return model.eval()


@pytest.fixture(scope="module")
def published(reference, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """As the hub file wraps it: a Lightning-style 'state_dict' with 'model.' on every key."""
    path = tmp_path_factory.mktemp("dofa") / "DOFA_CLIP_BASE.pth"
    torch.save({"state_dict": {f"model.{k}": v for k, v in reference.state_dict().items()}, "epoch": 3}, path)
    return path


@pytest.fixture(scope="module")
def encoder(published):  # noqa: ANN001, ANN201
    return load_encoder(EncoderSpec("dofa", "dofa-clip", str(published)))


def _normalised(x: torch.Tensor) -> torch.Tensor:
    x = torch.nn.functional.interpolate(x.clamp(0, 1), size=(224, 224), mode="bilinear", align_corners=False)
    return (x - 0.5) / 0.5


def test_sentinel2_equals_torchgeos_dofa_forward(reference, encoder) -> None:  # noqa: ANN001
    rng = np.random.default_rng(0)
    patches = rng.uniform(0, 6000, size=(2, 12, 120, 120)).astype(np.float32)
    got = encoder.encode_images(torch.from_numpy(patches), "s2")
    with torch.no_grad():
        features = reference.image_encoder.forward_features(_normalised(torch.from_numpy(patches) / 10000), S2_WAVES)
        expected = torch.nn.functional.normalize(reference.image_projection(features), dim=-1)
    np.testing.assert_allclose(got, expected.numpy(), atol=2e-5)


def test_sentinel1_at_dofas_sar_convention(reference, encoder) -> None:  # noqa: ANN001
    rng = np.random.default_rng(1)
    db = np.stack([rng.uniform(-25, 0, (2, 120, 120)), rng.uniform(-32, -5, (2, 120, 120))], axis=1).astype(np.float32)
    got = encoder.encode_images(torch.from_numpy(db), "s1")
    stretched = torch.stack([(torch.from_numpy(db[:, 0]) + 25) / 25, (torch.from_numpy(db[:, 1]) + 32) / 27], dim=1)
    with torch.no_grad():
        features = reference.image_encoder.forward_features(_normalised(stretched), [3.75, 3.75])
        expected = torch.nn.functional.normalize(reference.image_projection(features), dim=-1)
    np.testing.assert_allclose(got, expected.numpy(), atol=2e-5)


def test_texts_equal_the_reference_text_side(reference, encoder) -> None:  # noqa: ANN001
    import open_clip

    texts = ["a flooded city", "burnt forest after a wildfire"]
    tokens = open_clip.get_tokenizer("ViT-B-16")(texts)
    assert (tokens[:, 0] == 49406).all()  # the start token is the one pooled
    with torch.no_grad():
        expected = torch.nn.functional.normalize(reference.text_encoder(tokens), dim=-1)
    np.testing.assert_allclose(encoder.encode_texts(texts), expected.numpy(), atol=1e-5)


def test_the_kernel_follows_the_wavelengths(encoder) -> None:  # noqa: ANN001
    """Any band subset, in any order: the same bands reordered with their wavelengths give the same image."""
    from rsretrieve.encoders.dofa import model_input

    patches = torch.from_numpy(np.random.default_rng(2).uniform(0, 6000, size=(1, 12, 120, 120)).astype(np.float32))
    order = [3, 2, 1, 7]
    x, waves = model_input(patches[:, order], "s2", [("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09",
                                                       "B11", "B12")[i] for i in order])
    y, same = model_input(patches[:, sorted(order)], "s2", ["B02", "B03", "B04", "B08"])
    model = encoder.model
    with torch.no_grad():
        a = model.image_encoder(x, waves)
        b = model.image_encoder(y, same)
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    assert waves == [0.665, 0.56, 0.49, 0.832] and not math.isclose(float(a.abs().sum()), 0.0)


def test_a_file_with_other_keys_is_named(published, tmp_path) -> None:  # noqa: ANN001
    state = torch.load(published, weights_only=True)["state_dict"]
    state.pop("model.image_projection.weight")
    path = tmp_path / "broken.pth"
    torch.save(state, path)
    with pytest.raises(ModelError, match=r"broken.pth: missing keys image_projection.weight"):
        load_encoder(EncoderSpec("dofa", "dofa-clip", str(path)))


def test_both_sensors_index_from_the_cli(published, sample_root, tmp_path) -> None:  # noqa: ANN001
    import json

    from tests.cli.test_cli import invoke

    result = invoke("index", "--data", sample_root, "--model", "dofa-clip", "--pretrained", published, "--limit", "4",
                    "--out", tmp_path / "idx")
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "idx" / "manifest.json").read_text())
    assert manifest["encoder"]["wavelengths_um"]["s1"] == [3.75, 3.75] and manifest["counts"]["total"] == 4


def test_a_band_subset_is_fed_at_its_wavelengths(encoder) -> None:  # noqa: ANN001
    from rsretrieve.datasets.base import Batch
    from rsretrieve.embeddings import ImagePipeline

    patches = np.random.default_rng(3).uniform(0, 6000, size=(2, 12, 120, 120)).astype(np.float32)
    kept = ("B02", "B03", "B04", "B08")
    pipeline = ImagePipeline(encoder, {}, {"s2": "bundled"}, bands={"s2": kept})
    got = pipeline.embed(Batch("s2", ["a", "b"], patches, 0, (0, 0), np.zeros((2, 2))))
    from rsretrieve.encoders.dofa import model_input

    x, waves = model_input(torch.from_numpy(patches[:, [1, 2, 3, 7]]), "s2", kept)
    with torch.no_grad():
        expected = torch.nn.functional.normalize(encoder.model.image_projection(encoder.model.image_encoder(x, waves)), dim=-1)
    np.testing.assert_allclose(got, expected.numpy(), atol=1e-6)
    assert waves == [0.49, 0.56, 0.665, 0.832] and pipeline.band_report() == {"s2": {"kept": list(kept), "filled": []}}


def test_the_so400m_release_says_what_it_needs(tmp_path) -> None:  # noqa: ANN001
    with pytest.raises(ModelError, match=r"needs the timm model dofa_vit_so400m_patch14_siglip_384 of the authors' open_clip fork"):
        load_encoder(EncoderSpec("dofa-so400m", "dofa-clip-so400m", str(tmp_path)))
