"""The model zoo: every shipped card is valid, availability, specs, and errors."""

import subprocess
import sys
from pathlib import Path

import pytest

from rsretrieve.encoders import EncoderSpec
from rsretrieve.encoders.trained import DEFAULT_MODEL_DIR
from rsretrieve.errors import ConfigError, ModelError
from rsretrieve.zoo import CARDS_DIR, ModelCard, get_card, load_zoo, resolve_model

REQUIRED = {"clip-vit-b-32-openai", "remoteclip-vit-b-32", "georsclip-vit-b-32", "skyclip-vit-b-32", "git-rsclip",
            "git-rsclip-base", "closp-rn", "closp-vs", "closp-vl", "geoclosp-rn", "rsretrieve-default", "rsretrieve-tiny-random", "random"}


def test_shipped_zoo_covers_the_models_and_is_valid() -> None:
    zoo = load_zoo()
    assert REQUIRED <= set(zoo)
    assert zoo["git-rsclip"].backend == "transformers"
    assert any(r.metric == "ndcg@1000" for r in zoo["skyclip-vit-b-32"].references)


def test_availability_and_specs(tmp_path, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setenv("RSRETRIEVE_HOME", str(tmp_path))
    zoo = load_zoo()
    assert zoo["random"].availability()[0] and zoo["rsretrieve-default"].availability()[0]
    assert zoo["rsretrieve-tiny-random"].spec() == EncoderSpec("open_clip", "rsretrieve-tiny", None, 0)
    available, why = zoo["remoteclip-vit-b-32"].availability()
    assert not available and why == f"not at {tmp_path / 'checkpoints' / 'RemoteCLIP-ViT-B-32.pt'}"
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "RemoteCLIP-ViT-B-32.pt").write_bytes(b"x")
    assert zoo["remoteclip-vit-b-32"].availability()[0]
    assert zoo["remoteclip-vit-b-32"].spec().pretrained == str(tmp_path / "checkpoints" / "RemoteCLIP-ViT-B-32.pt")
    assert not zoo["clip-vit-b-32-openai"].availability()[0]  # nothing in the HF cache here


def test_cards_reject_unknown_keys_and_names_must_match(tmp_path) -> None:  # noqa: ANN001
    path = tmp_path / "mine.yaml"
    path.write_text("name: mine\ndescription: x\nbackend: random\nmodel: random\nsede: 1\n")
    with pytest.raises(ConfigError, match="mine.yaml: unknown key 'sede'. Did you mean 'seed'"):
        ModelCard.from_file(path)
    path.write_text("name: other\ndescription: x\nbackend: random\nmodel: random\n")
    with pytest.raises(ConfigError, match="must match the file name 'mine'"):
        ModelCard.from_file(path)


def test_user_zoo_folders_extend_the_zoo(tmp_path, monkeypatch) -> None:  # noqa: ANN001
    (tmp_path / "mine.yaml").write_text("name: mine\ndescription: x\nbackend: random\nmodel: random\nseed: 3\n")
    monkeypatch.setenv("RSRETRIEVE_ZOO", str(tmp_path))
    assert get_card("mine").seed == 3
    (tmp_path / "random.yaml").write_text("name: random\ndescription: x\nbackend: random\nmodel: random\n")
    with pytest.raises(ConfigError, match="model 'random' is already defined"):
        load_zoo()


def test_unknown_model_did_you_mean() -> None:
    with pytest.raises(ConfigError, match="unknown model 'remoteclip'. Did you mean 'remoteclip-vit-b-32'"):
        get_card("remoteclip")


def test_zoo_ships_inside_the_package() -> None:
    import rsretrieve

    assert CARDS_DIR == Path(rsretrieve.__file__).parent / "cards" and len(list(CARDS_DIR.glob("*.yaml"))) >= len(REQUIRED)


def test_openai_initialised_clips_are_quickgelu_models() -> None:
    zoo = load_zoo()
    assert zoo["clip-vit-b-32-openai"].model == zoo["georsclip-vit-b-32"].model == "ViT-B-32-quickgelu"
    assert zoo["remoteclip-vit-b-32"].model == "ViT-B-32"


def test_resolve_model_routes_every_kind_of_name(tmp_path, monkeypatch) -> None:  # noqa: ANN001
    import json
    import shutil

    monkeypatch.setenv("RSRETRIEVE_HOME", str(tmp_path))
    assert resolve_model() == resolve_model("rsretrieve-default") == EncoderSpec("rsretrieve", "default")
    with pytest.warns(UserWarning, match="--model default is now --model rsretrieve-default"):
        assert resolve_model("default") == resolve_model()
    assert resolve_model("random", seed=2) == EncoderSpec("random", "random", None, 2)
    assert resolve_model("ViT-B-32", "openai") == EncoderSpec("open_clip", "ViT-B-32", "openai", 0)
    assert resolve_model("hf-hub:org/name").backend == "open_clip"
    assert resolve_model("rsretrieve-tiny-random") == EncoderSpec("open_clip", "rsretrieve-tiny", None, 0)
    weights = tmp_path / "closp.safetensors"
    assert resolve_model("closp-rn", str(weights)) == EncoderSpec("closp", "closp-rn", str(weights), 0)
    with pytest.raises(ModelError, match=r"model 'closp-rn' needs its weights at .*checkpoints/CLOSP-RN; get them from hf-hub DarthReca/CLOSP-RN"):
        resolve_model("closp-rn")
    (tmp_path / "checkpoints" / "CLOSP-RN").mkdir(parents=True)
    assert resolve_model("closp-rn").pretrained == str(tmp_path / "checkpoints" / "CLOSP-RN")
    shutil.copytree(DEFAULT_MODEL_DIR, tmp_path / "trained")
    assert resolve_model(str(tmp_path / "trained")).backend == "rsretrieve"
    (tmp_path / "siglip").mkdir()
    (tmp_path / "siglip" / "config.json").write_text(json.dumps({"model_type": "siglip"}))
    assert resolve_model(str(tmp_path / "siglip")) == EncoderSpec("transformers", str(tmp_path / "siglip"), None, 0)
    with pytest.raises(ConfigError, match="--pretrained needs --model"):
        resolve_model(None, "openai")
    with pytest.raises(ConfigError, match="unknown model 'closp-rm'. Did you mean 'closp-rn'"):
        resolve_model("closp-rm")


def test_cards_name_the_cache_entry_open_clip_itself_uses() -> None:
    from rsretrieve.encoders.open_clip import _open_clip

    for card in load_zoo().values():
        if card.hf_hub is not None and card.backend == "open_clip":
            source = _open_clip().get_pretrained_cfg(card.model, card.pretrained or "")
            assert card.hf_hub == source["hf_hub"].rstrip("/"), card.name


def test_models_lists_the_zoo_without_loading_any_model_code() -> None:
    code = ("import sys\nfrom rsretrieve.cli.app import app\n"
            "try: app(['models'])\nexcept SystemExit as e: assert e.code == 0, e.code\n"
            "print('LOADED', ','.join(m for m in ('torch', 'open_clip', 'faiss', 'timm') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "LOADED", out[-500:]
