"""The transformers backend on a tiny random SigLIP saved to disk, and the random baseline."""

from pathlib import Path

import numpy as np
import pytest
import torch

from rsretrieve.encoders import EncoderSpec, load_encoder
from rsretrieve.errors import ModelError


def make_tiny_siglip(folder: Path) -> Path:
    """A random SigLIP with a word-level tokenizer: what Git-RSCLIP looks like, in 100 kB."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, SiglipConfig, SiglipImageProcessor, SiglipModel

    words = "satellite image of water trees built flooded area".split()
    tokenizer = Tokenizer(models.WordLevel(vocab={w: i for i, w in enumerate(["[PAD]", "[UNK]", *words])}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    config = SiglipConfig(
        text_config={"vocab_size": 64, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                     "num_attention_heads": 2, "max_position_embeddings": 16, "bos_token_id": None, "eos_token_id": None},
        vision_config={"image_size": 32, "patch_size": 8, "hidden_size": 32, "intermediate_size": 64,
                       "num_hidden_layers": 1, "num_attention_heads": 2},
    )
    torch.manual_seed(0)
    SiglipModel(config).save_pretrained(folder)
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="[PAD]", unk_token="[UNK]", model_max_length=16).save_pretrained(folder)
    SiglipImageProcessor(size={"height": 32, "width": 32}, image_mean=[0.4, 0.4, 0.4], image_std=[0.2, 0.2, 0.2]).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def siglip(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    folder = make_tiny_siglip(tmp_path_factory.mktemp("siglip"))
    return load_encoder(EncoderSpec("transformers", str(folder)))


def test_siglip_folder_encodes_images_and_texts(siglip) -> None:  # noqa: ANN001
    images = siglip.encode_images(torch.rand(2, 3, 120, 120))
    texts = siglip.encode_texts(["satellite image of water", "trees"])
    assert images.shape == texts.shape == (2, 32)
    np.testing.assert_allclose(np.linalg.norm(images, axis=1), 1, rtol=1e-5)
    assert siglip.image_size == (32, 32)
    torch.testing.assert_close(siglip.mean.flatten(), torch.full((3,), 0.4))


def test_transformers_errors(tmp_path) -> None:  # noqa: ANN001
    with pytest.raises(ModelError, match="not a transformers model folder"):
        load_encoder(EncoderSpec("transformers", str(tmp_path)))
    with pytest.raises(ModelError, match="hf download org/none"):
        load_encoder(EncoderSpec("transformers", "org/none"))


def test_random_baseline_is_content_hashed() -> None:
    encoder = load_encoder(EncoderSpec("random", "random", None, 0))
    x = torch.rand(3, 2, 8, 8)
    a = encoder.encode_images(x, "s1")
    np.testing.assert_array_equal(a[1:], encoder.encode_images(x[1:], "s1"))  # order-independent
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1, rtol=1e-5)
    other = load_encoder(EncoderSpec("random", "random", None, 1))
    assert not np.allclose(other.encode_texts(["q"]), encoder.encode_texts(["q"]))


def test_a_folder_asking_to_run_its_own_code_is_refused_without_a_question(sample_root, tmp_path) -> None:  # noqa: ANN001
    """`auto_map` makes transformers import the folder's Python files (and, at a terminal, ask
    whether it may). rsretrieve refuses in one line, asks nothing, and runs nothing, even
    when a `y` is waiting on standard input."""
    import json

    from typer.testing import CliRunner

    from rsretrieve.cli.app import app

    folder = make_tiny_siglip(tmp_path / "custom")
    marker = tmp_path / "code-ran"
    (folder / "modeling_evil.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    for name in ("config.json", "tokenizer_config.json"):
        config = json.loads((folder / name).read_text())
        config["auto_map"] = {"AutoModel": "modeling_evil.EvilModel"}
        (folder / name).write_text(json.dumps(config))
        result = CliRunner().invoke(app, ["index", "--data", str(sample_root), "--model", str(folder), "--limit", "4",
                                          "--out", str(tmp_path / "idx")], input="y\ny\n")
        assert result.exit_code == 2 and f"{name}: field 'auto_map' asks to run" in result.stderr, result.output
        with pytest.raises(ModelError, match=rf"{name}: field 'auto_map' asks to run the folder's own Python code"):
            load_encoder(EncoderSpec("transformers", str(folder)))
        assert "[y/N]" not in result.output and "trust_remote_code" not in result.output
        config.pop("auto_map")
        (folder / name).write_text(json.dumps(config))
    assert not marker.exists()


def test_pickled_weights_in_a_model_folder_are_one_line(tmp_path) -> None:  # noqa: ANN001
    import pathlib

    from transformers import SiglipModel

    folder = make_tiny_siglip(tmp_path / "pickled")
    state = SiglipModel.from_pretrained(folder).state_dict()
    state["payload"] = pathlib.PurePosixPath("/etc/passwd")  # any object: weights_only refuses it
    torch.save(state, folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    with pytest.raises(ModelError, match=r"cannot be read without unpickling code .*never runs code from a model folder"):
        load_encoder(EncoderSpec("transformers", str(folder)))
