"""CLOSP: checkpoints in the published layout, in every accepted file format, give the
embeddings of a reference forward built directly with timm and transformers by the authors'
recipe (models/closp.py)."""

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from rsretrieve.encoders import EncoderSpec, load_encoder
from rsretrieve.errors import ModelError

timm = pytest.importorskip("timm")
transformers = pytest.importorskip("transformers")
from rsretrieve.encoders.closp import minilm_folder  # noqa: E402

TEXTS = ["satellite image of water", "flooded area. crops", "a very long query " * 30]


class Reference(torch.nn.Module):
    """The authors' module layout, built here with timm/transformers only (not rsretrieve)."""

    def __init__(self, arch: str, widths: tuple[int, int]) -> None:
        super().__init__()
        features = {"resnet50": 2048, "vit_small_patch16_224": 384}[arch]
        heads = [0 if w == features else w for w in widths]
        self.s1_encoder = timm.create_model(arch, pretrained=False, num_classes=heads[0], in_chans=2)
        self.s2_encoder = timm.create_model(arch, pretrained=False, num_classes=heads[1], in_chans=13)
        self.s1_projection = torch.nn.Linear(widths[0], 384)
        self.s2_projection = torch.nn.Linear(widths[1], 384)
        config = transformers.AutoConfig.from_pretrained(minilm_folder())
        self.text_model = transformers.AutoModel.from_config(config)
        self.arch = arch

    @torch.no_grad()
    def image(self, stored: np.ndarray, sensor: str) -> np.ndarray:
        data = np.nan_to_num(stored, nan=0 if sensor == "s2" else 1e-6)
        if sensor == "s2":
            data = np.insert(data, 10, 0, axis=1) / 10000
        x = torch.from_numpy(np.ascontiguousarray(data)).float()
        if self.arch.startswith("vit"):  # kornia Resize(224): bilinear, align_corners=True
            x = F.interpolate(x, size=(224, 224), mode="bilinear", align_corners=True)
        tower, projection = (self.s1_encoder, self.s1_projection) if sensor == "s1" else (self.s2_encoder, self.s2_projection)
        return F.normalize(projection(tower(x)), dim=-1).numpy()

    @torch.no_grad()
    def text(self, texts: list[str]) -> np.ndarray:
        tokenizer = transformers.AutoTokenizer.from_pretrained(minilm_folder())
        batch = tokenizer(texts, padding="max_length", truncation=True, max_length=64, return_tensors="pt")
        hidden = self.text_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                 output_hidden_states=True).hidden_states[-1]
        return F.normalize(hidden[:, 0, :], dim=-1).numpy()


def random_reference(arch: str, widths: tuple[int, int], seed: int = 0) -> Reference:
    torch.manual_seed(seed)
    model = Reference(arch, widths).eval()
    with torch.no_grad():  # timm's zero-init of some layers would hide a wrong mapping
        for tensor in model.state_dict().values():
            if tensor.dtype.is_floating_point:
                tensor.add_(torch.randn_like(tensor) * 0.02)
    return model


def save(state: dict, path: Path, fmt: str) -> Path:
    if fmt == "safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in state.items()}, str(path.with_suffix(".safetensors")))
        return path.with_suffix(".safetensors")
    if fmt == "ckpt":  # Lightning: the LightningModule holds the CLOSP model as `model`
        torch.save({"epoch": 3, "state_dict": {f"model.{k}": v for k, v in state.items()}}, path.with_suffix(".ckpt"))
        return path.with_suffix(".ckpt")
    torch.save(state, path.with_suffix(f".{fmt}"))
    return path.with_suffix(f".{fmt}")


def stored_images(sensor: str, n: int = 2) -> np.ndarray:
    rng = np.random.default_rng(1)
    if sensor == "s2":
        images = rng.uniform(0, 6000, (n, 12, 120, 120)).astype(np.float32)
    else:
        images = rng.normal(-15, 4, (n, 2, 120, 120)).astype(np.float32)
    return images


def check(encoder, reference: Reference) -> None:  # noqa: ANN001
    for sensor in ("s1", "s2"):
        images = stored_images(sensor)
        ours = encoder.encode_images(torch.from_numpy(images.copy()), sensor)
        np.testing.assert_allclose(ours, reference.image(images, sensor), atol=1e-5, err_msg=sensor)
    np.testing.assert_allclose(encoder.encode_texts(TEXTS), reference.text(TEXTS), atol=1e-5)


@pytest.fixture(scope="module")
def rn_reference() -> Reference:
    return random_reference("resnet50", (1000, 1000))


@pytest.mark.parametrize("fmt", ["safetensors", "pt", "pth", "bin", "ckpt"])
def test_closp_rn_equals_the_reference_forward_in_every_format(rn_reference, tmp_path, fmt: str) -> None:  # noqa: ANN001
    path = save(rn_reference.state_dict(), tmp_path / "closp-rn", fmt)
    encoder = load_encoder(EncoderSpec("closp", "closp-rn", str(path)))
    assert encoder.describe()["text_weights"] == "checkpoint"
    check(encoder, rn_reference)


def test_closp_vs_reads_tower_widths_from_the_checkpoint(tmp_path) -> None:  # noqa: ANN001
    # torchgeo's S2 ViT-S keeps timm's 1000-class head; the S1 ViT-S has none (384-d)
    reference = random_reference("vit_small_patch16_224", (384, 1000), seed=1)
    save(reference.state_dict(), tmp_path / "closp-vs", "safetensors")
    check(load_encoder(EncoderSpec("closp", "closp-vs", str(tmp_path))), reference)  # a folder holding the file works too


def test_checkpoint_without_text_weights_uses_the_shipped_minilm(rn_reference, tmp_path) -> None:  # noqa: ANN001
    state = {k: v for k, v in rn_reference.state_dict().items() if not k.startswith("text_model.")}
    path = save(state, tmp_path / "vision-only", "safetensors")
    encoder = load_encoder(EncoderSpec("closp", "closp-rn", str(path)))
    assert encoder.describe()["text_weights"].startswith("all-MiniLM-L6-v2")
    shipped = transformers.AutoModel.from_pretrained(minilm_folder())
    reference = Reference.__new__(Reference)
    torch.nn.Module.__init__(reference)
    reference.text_model = shipped.eval()
    np.testing.assert_allclose(encoder.encode_texts(TEXTS), Reference.text(reference, TEXTS), atol=1e-5)


def test_bad_checkpoints_name_the_keys(rn_reference, tmp_path) -> None:  # noqa: ANN001
    state = dict(rn_reference.state_dict())
    del state["s2_encoder.fc.weight"]
    state["s3_projection.weight"] = torch.zeros(2)
    path = save(state, tmp_path / "broken", "safetensors")
    with pytest.raises(ModelError, match=r"missing keys s2_encoder.fc.weight; unexpected keys s3_projection.weight"):
        load_encoder(EncoderSpec("closp", "closp-rn", str(path)))
    state = {**rn_reference.state_dict(), "location_encoder.nnet.last_layer.bias": torch.zeros(256)}
    path = save(state, tmp_path / "geo", "safetensors")
    with pytest.raises(ModelError, match=r"a GeoCLOSP checkpoint .* not closp-rn; load it with --model geoclosp-rn"):
        load_encoder(EncoderSpec("closp", "closp-rn", str(path)))
    torchgeo_backbone = {k.removeprefix("s1_encoder."): v for k, v in rn_reference.state_dict().items() if k.startswith("s1_encoder.")}
    path = save(torchgeo_backbone, tmp_path / "backbone", "pt")
    with pytest.raises(ModelError, match=r"missing keys s1_projection.weight \(not a CLOSP checkpoint\)"):
        load_encoder(EncoderSpec("closp", "closp-rn", str(path)))
    (tmp_path / "pickled.pt").write_bytes(b"\x80\x04\x95not a checkpoint")
    with pytest.raises(ModelError, match=r"pickled.pt: cannot be read as weights with weights_only=True"):
        load_encoder(EncoderSpec("closp", "closp-rn", str(tmp_path / "pickled.pt")))
    with pytest.raises(ModelError, match=r"weights file .*absent.safetensors not found"):
        load_encoder(EncoderSpec("closp", "closp-rn", str(tmp_path / "absent.safetensors")))


def test_closp_card_works_as_model_from_the_cli(rn_reference, sample_root, tmp_path, monkeypatch) -> None:  # noqa: ANN001
    from typer.testing import CliRunner

    from rsretrieve.cli.app import app

    monkeypatch.setenv("RSRETRIEVE_HOME", str(tmp_path / "home"))
    runner = CliRunner()
    missing = runner.invoke(app, ["index", "--data", str(sample_root), "--out", str(tmp_path / "idx"), "--model", "closp-rn"])
    assert missing.exit_code == 2 and "model 'closp-rn' needs its weights at" in " ".join(missing.stderr.split())
    weights = save(rn_reference.state_dict(), tmp_path / "closp-rn", "safetensors")
    result = runner.invoke(app, ["index", "--data", str(sample_root), "--out", str(tmp_path / "idx"), "--model", "closp-rn",
                                 "--pretrained", str(weights), "--limit", "8"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["eval", "--index", str(tmp_path / "idx"), "--model", "closp-rn", "--pretrained", str(weights),
                                 "-m", "ndcg@10", "--out", str(tmp_path / "r.json")])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("name", ["w.bin", "w.w", "w.pt"])
def test_a_safetensors_file_is_known_by_its_bytes_not_its_name(rn_reference, tmp_path, name: str) -> None:  # noqa: ANN001
    path = save(dict(rn_reference.state_dict()), tmp_path / "st", "safetensors")
    renamed = path.rename(tmp_path / name)
    encoder = load_encoder(EncoderSpec("closp", "closp-rn", str(renamed)))
    assert encoder.embed_dim == 384
