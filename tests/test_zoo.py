"""The model zoo: every shipped card is valid, availability, specs, and errors."""

from pathlib import Path

import pytest

from rsretrieve.encoders import EncoderSpec
from rsretrieve.errors import ConfigError
from rsretrieve.zoo import REPO_CONFIGS, ModelCard, get_card, load_zoo

REQUIRED = {"clip-vit-b-32-openai", "remoteclip-vit-b-32", "georsclip-vit-b-32", "skyclip-vit-b-32",
            "git-rsclip", "closp-resnet50", "rsretrieve-default", "rsretrieve-tiny-random", "random"}


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
    assert not available and "RemoteCLIP-ViT-B-32.pt" in why and "chendelong/RemoteCLIP" in why
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


def test_zoo_lives_in_configs() -> None:
    assert (REPO_CONFIGS / "models").is_dir() and REPO_CONFIGS == Path(__file__).resolve().parents[1] / "configs"
