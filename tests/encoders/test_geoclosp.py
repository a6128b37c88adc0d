"""GeoCLOSP: every published layout (authors' state dict, hub folder with config.json, Lightning
checkpoint) loads and gives the reference forward; location embeddings equal an independent
implementation of SatCLIP's encoder written here (scipy's Legendre functions, SIREN by hand)."""

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from rsretrieve.encoders import EncoderSpec, load_encoder
from rsretrieve.errors import ModelError
from tests.encoders.test_closp import check, random_reference, save

special = pytest.importorskip("scipy.special")

DEGREES, HIDDEN, LAYERS, LOC_DIM = 10, 256, 2, 256
PLACES = np.array([[12.49, 41.89], [-74.0, 40.7], [179.9, -89.5], [-180.0, 90.0], [0.0, 0.0], [151.2, -33.9]])


def satclip_harmonics(lon: np.ndarray, lat: np.ndarray, degrees: int) -> np.ndarray:
    """SatCLIP's analytic table: orthonormal real harmonics without the Condon-Shortley phase,
    m = 0 terms times pi (its generator writes (2l+1)/4*pi for (2l+1)/(4*pi))."""
    phi, theta = np.radians(lon + 180), np.radians(lat + 90)
    columns = []
    for l in range(degrees):
        for m in range(-l, l + 1):
            a = abs(m)
            legendre = special.lpmv(a, l, np.cos(theta)) * (-1) ** a  # scipy includes the phase: undo it
            norm = math.sqrt((2 * l + 1) / (4 * math.pi) * math.factorial(l - a) / math.factorial(l + a))
            if m == 0:
                columns.append(math.pi * norm * legendre)
            else:
                columns.append(math.sqrt(2) * norm * legendre * (np.cos(a * phi) if m > 0 else np.sin(a * phi)))
    return np.stack(columns, axis=1)


def satclip_location(state: dict, places: np.ndarray) -> np.ndarray:
    """normalize(location_projection(SIREN(SH(lon, lat)))), by hand in float64."""
    def weights(name: str) -> tuple[np.ndarray, np.ndarray]:
        return state[f"{name}.weight"].double().numpy(), state[f"{name}.bias"].double().numpy()

    x = satclip_harmonics(places[:, 0], places[:, 1], DEGREES)
    for i in range(LAYERS):
        w, b = weights(f"location_encoder.nnet.layers.{i}")
        x = np.sin((30.0 if i == 0 else 1.0) * (x @ w.T + b))
    w, b = weights("location_encoder.nnet.last_layer")
    x = x @ w.T + b
    w, b = weights("location_projection")
    x = x @ w.T + b
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def geoclosp_state(seed: int = 3) -> dict:
    """A random GeoCLOSP state dict in the authors' layout (CLOSP-RN plus the location keys)."""
    state = dict(random_reference("resnet50", (1000, 1000), seed).state_dict())
    generator = torch.Generator().manual_seed(seed)

    def uniform(*shape: int, bound: float) -> torch.Tensor:
        return (torch.rand(*shape, generator=generator) * 2 - 1) * bound

    widths = [DEGREES * DEGREES] + [HIDDEN] * LAYERS
    for i in range(LAYERS):
        state[f"location_encoder.nnet.layers.{i}.weight"] = uniform(HIDDEN, widths[i], bound=1 / widths[i] if i == 0 else 0.15)
        state[f"location_encoder.nnet.layers.{i}.bias"] = uniform(HIDDEN, bound=0.1)
    state["location_encoder.nnet.last_layer.weight"] = uniform(LOC_DIM, HIDDEN, bound=0.15)
    state["location_encoder.nnet.last_layer.bias"] = uniform(LOC_DIM, bound=0.1)
    state["location_projection.weight"] = uniform(384, LOC_DIM, bound=0.06)
    state["location_projection.bias"] = uniform(384, bound=0.06)
    return state


HUB_CONFIG = {"architectures": ["CLOSPModel"], "auto_map": {"AutoModel": "modeling_closp.CLOSPModel"},
              "location_embedding_dim": 256, "projection_dim": 384, "use_location_encoder": True,
              "vision_model_key": "resnet50", "s1_embedding_dim": 1000, "s2_embedding_dim": 1000}


def hub_folder(state: dict, folder: Path, **changes: object) -> Path:
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({**HUB_CONFIG, **changes}))
    return folder


@pytest.fixture(scope="module")
def state() -> dict:
    return geoclosp_state()


@pytest.fixture(scope="module")
def reference(state):  # noqa: ANN001, ANN201
    model = random_reference("resnet50", (1000, 1000))
    model.load_state_dict({k: v for k, v in state.items() if not k.startswith("location")})
    return model


def lightning(state: dict, path: Path) -> Path:
    torch.save({"epoch": 9, "global_step": 1200, "state_dict": {f"model.{k}": v for k, v in state.items()},
                "hyper_parameters": {"text_model": "sentence-transformers/all-MiniLM-L6-v2", "vision_model": "resnet50",
                                     "location_encoder": "weights/satclip/satclip-resnet50-l10.ckpt"}}, path)
    return path


@pytest.mark.parametrize("layout", ["state-dict", "hub-folder", "lightning"])
def test_every_published_layout_gives_the_reference_forward(state, reference, tmp_path, layout: str) -> None:  # noqa: ANN001
    if layout == "state-dict":
        weights = save(state, tmp_path / "geoclosp", "pt")
    elif layout == "hub-folder":
        weights = hub_folder(state, tmp_path / "GeoCLOSP-RN")
    else:
        weights = lightning(state, tmp_path / "epoch=9.ckpt")
    encoder = load_encoder(EncoderSpec("closp", "geoclosp-rn", str(weights)))
    check(encoder, reference)  # text and both towers: CLOSP's forward with GeoCLOSP's weights
    np.testing.assert_allclose(encoder.encode_locations(PLACES), satclip_location(state, PLACES), atol=2e-5)


def test_closed_form_and_analytic_harmonics_differ_as_documented() -> None:
    from rsretrieve.encoders.location import spherical_harmonics

    points = torch.tensor(PLACES)
    analytic = spherical_harmonics(points, DEGREES, "analytic").numpy()
    closed = spherical_harmonics(points, DEGREES, "closed-form").numpy()
    np.testing.assert_allclose(analytic, satclip_harmonics(PLACES[:, 0], PLACES[:, 1], DEGREES), atol=1e-9)
    orders = np.array([m for l in range(DEGREES) for m in range(-l, l + 1)])
    factor = np.where(orders == 0, math.pi, (-1.0) ** np.abs(orders))
    np.testing.assert_allclose(analytic, closed * factor, atol=1e-9)
    assert analytic.shape == (len(PLACES), 100)


def test_hub_config_mismatch_names_the_field(state, tmp_path, monkeypatch) -> None:  # noqa: ANN001
    weights = hub_folder(state, tmp_path / "hub") / "model.safetensors"
    with monkeypatch.context() as patch:  # named before the towers and MiniLM are built
        patch.setattr("rsretrieve.encoders.closp.ClospModel", lambda *a: pytest.fail("the model was built"))
        for field, value in (("vision_model_key", "vit-s"), ("location_embedding_dim", 512), ("projection_dim", 512),
                             ("use_location_encoder", False), ("s2_embedding_dim", 2048)):
            folder = tmp_path / field
            folder.mkdir()
            os.link(weights, folder / weights.name)  # the same file: only config.json differs
            (folder / "config.json").write_text(json.dumps({**HUB_CONFIG, field: value}))
            with pytest.raises(ModelError, match=rf"config.json: field '{field}' is {json.dumps(value)}"):
                load_encoder(EncoderSpec("closp", "geoclosp-rn", str(folder)))
    clean = {k: v for k, v in state.items() if not k.startswith("location")}
    folder = hub_folder(clean, tmp_path / "closp-rn", use_location_encoder=False)
    load_encoder(EncoderSpec("closp", "closp-rn", str(folder)))  # CLOSP-RN's own hub folder loads
    with pytest.raises(ModelError, match=r"missing keys location_encoder.nnet.layers.0.weight"):
        load_encoder(EncoderSpec("closp", "geoclosp-rn", str(folder)))


def test_location_queries_from_the_cli(state, sample_root, tmp_path, monkeypatch) -> None:  # noqa: ANN001
    from typer.testing import CliRunner

    from rsretrieve.cli.app import app
    from rsretrieve.index import load_index

    weights = hub_folder(state, tmp_path / "GeoCLOSP-RN")
    runner = CliRunner()
    built = runner.invoke(app, ["index", "--data", str(sample_root), "--out", str(tmp_path / "idx"), "--model", "geoclosp-rn",
                                "--pretrained", str(weights), "--limit", "12"])
    assert built.exit_code == 0, built.output
    result = runner.invoke(app, ["search", "--index", str(tmp_path / "idx"), "--location", "12.5,41.9", "-k", "3",
                                 "--out", str(tmp_path / "loc.trec")])
    assert result.exit_code == 0, result.output
    index = load_index(tmp_path / "idx")
    query = satclip_location(state, np.array([[12.5, 41.9]]))
    expected = [index.keys[i] for i in np.argsort(-(np.asarray(index.embeddings) @ query[0]))[:3]]
    lines = (tmp_path / "loc.trec").read_text().split("\n")
    assert [line.split()[2] for line in lines if line] == expected
    bad = runner.invoke(app, ["search", "--index", str(tmp_path / "idx"), "--location", "200,10"])
    assert bad.exit_code == 2 and "--location 200.0,10.0 is not lon,lat in degrees" in bad.stderr


def test_an_unknown_harmonics_field_names_the_file_and_field(state, tmp_path) -> None:  # noqa: ANN001
    folder = hub_folder(state, tmp_path / "hub", harmonics_calculation="spherical-bessel")
    with pytest.raises(ModelError, match=r"hub/config.json: field 'harmonics_calculation' is 'spherical-bessel'; "
                                         r"rsretrieve knows analytic, closed-form"):
        load_encoder(EncoderSpec("closp", "geoclosp-rn", str(folder)))


def test_a_lightning_checkpoint_with_one_bare_key_is_diagnosed(state, tmp_path) -> None:  # noqa: ANN001
    path = lightning(state, tmp_path / "mixed.ckpt")
    saved = torch.load(path, weights_only=True)
    key = "s1_projection.bias"
    saved["state_dict"][key] = saved["state_dict"].pop(f"model.{key}")
    torch.save(saved, path)
    with pytest.raises(ModelError, match=rf"mixed.ckpt: \d+ keys start with 'model.' but 1 do not \({key}\), so the prefix cannot be removed"):
        load_encoder(EncoderSpec("closp", "geoclosp-rn", str(path)))
