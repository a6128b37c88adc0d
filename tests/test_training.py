"""Training: captions, the loss, a tiny real run (loss falls, retrieval improves), resume."""

from pathlib import Path

import numpy as np
import pytest
import torch

from rsretrieve.datasets.crisislandmark import CrisisLandMark
from rsretrieve.datasets.fixtures.crisislandmark import generate_sample
from rsretrieve.embeddings import build_pipeline
from rsretrieve.encoders import EncoderSpec, load_encoder
from rsretrieve.encoders.text import TextSpec, load_text_encoder
from rsretrieve.encoders.trained import DualEncoder, TowerConfig, load_model, read_model_config, save_model
from rsretrieve.errors import ConfigError, DataError
from rsretrieve.evaluate import evaluate_index
from rsretrieve.index import build_index
from rsretrieve.training import TEMPLATES, TrainConfig, caption, contrastive_loss, train

SMALL = TrainConfig(epochs=10, batch_size=16, lr=3e-3, warmup_steps=2, patience=10, tower=TowerConfig(width=32))


@pytest.fixture(scope="module")
def train_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """60 samples, 60 % train: enough labelled patches for a few contrastive epochs."""
    return generate_sample(tmp_path_factory.mktemp("train") / "clm", n_samples=60, seed=3, train_fraction=0.6)


@pytest.fixture(scope="module")
def run_dir(train_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("runs") / "run"
    return out, train(train_root, out, SMALL)


def test_captions_use_templates_and_every_label() -> None:
    rng = np.random.default_rng(0)
    texts = {caption(("water", "trees", "built"), rng) for _ in range(40)}
    assert len(texts) > 5
    for text in texts:
        assert all(label in text for label in ("water", "trees", "built"))
        assert any(text == t.format(text[len(t.split("{}")[0]):]) for t in TEMPLATES)
    assert caption(("water",), np.random.default_rng(1)) in {t.format("water") for t in TEMPLATES}


def test_contrastive_loss_rewards_alignment_and_shares_positives() -> None:
    eye = torch.eye(3)
    scale = torch.tensor(np.log(100.0))
    aligned = contrastive_loss(eye, eye, [("a",), ("b",), ("c",)], scale)
    crossed = contrastive_loss(eye, eye[[1, 2, 0]], [("a",), ("b",), ("c",)], scale)
    assert aligned < 0.01 < crossed
    # two samples with one label set and one caption each: both captions are positives
    shared = contrastive_loss(eye[:2], torch.ones(2, 3) / 3**0.5, [("a",), ("a",)], scale)
    assert shared == pytest.approx(np.log(2), abs=1e-5)


def test_tiny_run_loss_falls_and_retrieval_beats_the_untrained_model(run_dir, train_root, tmp_path) -> None:  # noqa: ANN001
    out, record = run_dir
    losses = [h["loss"] for h in record["history"][1:]]
    assert losses[-1] < 0.8 * losses[0]
    assert record["best_ndcg@10"] > record["history"][0]["ndcg@10"]
    assert sorted(p.name for p in (out / "best").iterdir()) == [".rsretrieve", "config.json", "model.safetensors"]

    config, _ = read_model_config(out / "best")
    torch.manual_seed(SMALL.seed)
    save_model(DualEncoder(config), tmp_path / "untrained", {})
    corpus = CrisisLandMark(train_root)  # the test split: never seen in training
    scores = {}
    for name, folder in (("trained", out / "best"), ("untrained", tmp_path / "untrained")):
        build_index(corpus, build_pipeline(EncoderSpec("rsretrieve", str(folder)), sensors=corpus.sensors), tmp_path / f"index-{name}")
        scores[name] = evaluate_index(tmp_path / f"index-{name}", metrics=["ndcg@10"]).report["results"]["all"]["scores"]["ndcg@10"]
    assert scores["trained"] > scores["untrained"] + 0.1, scores


def test_resume_continues_exactly(run_dir, train_root, tmp_path) -> None:  # noqa: ANN001
    out, record = run_dir
    split = tmp_path / "split"
    train(train_root, split, TrainConfig(**{**SMALL.__dict__, "epochs": 5}))
    resumed = train(train_root, split, SMALL, resume=True)
    assert [h["loss"] for h in resumed["history"][1:]] == pytest.approx([h["loss"] for h in record["history"][1:]], rel=1e-5)
    a, b = load_model(split / "last"), load_model(out / "last")
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        torch.testing.assert_close(x, y, msg=name)


def test_existing_run_needs_resume(run_dir, train_root) -> None:  # noqa: ANN001
    with pytest.raises(DataError, match="already holds a training run; pass --resume"):
        train(train_root, run_dir[0], SMALL)


def test_freeze_encoder_trains_adapter_and_projection_only(train_root, tmp_path) -> None:  # noqa: ANN001
    config = TrainConfig(**{**SMALL.__dict__, "epochs": 1, "freeze": "encoder", "tower": TowerConfig(adapter="linear", width=16)})
    train(train_root, tmp_path / "frozen", config)
    torch.manual_seed(config.seed)
    start = DualEncoder(read_model_config(tmp_path / "frozen" / "last")[0])
    end = load_model(tmp_path / "frozen" / "last")
    for sensor in end.towers:
        before, after = start.towers[sensor], end.towers[sensor]
        torch.testing.assert_close(before.backbone.state_dict(), after.backbone.state_dict())
        assert not torch.allclose(before.projection.weight, after.projection.weight)
        assert not torch.allclose(before.adapter.weight, after.adapter.weight)


def test_bad_training_options() -> None:
    with pytest.raises(ConfigError, match="--freeze must be one of none, encoder"):
        TrainConfig(freeze="all")
    with pytest.raises(ConfigError, match="unknown backbone 'resnet'"):
        TowerConfig(backbone="resnet")
    with pytest.raises(ConfigError, match="unknown text encoder 'minlm'. Did you mean 'minilm'"):
        TextSpec(kind="minlm")


def test_minilm_text_encoder_is_real_and_offline() -> None:
    encoder = load_text_encoder(TextSpec())
    vectors = encoder.encode(["satellite image of flooded area", "areas under water after heavy rain", "satellite image of trees"])
    assert vectors.shape == (3, 384)
    assert vectors[0] @ vectors[1] > vectors[1] @ vectors[2]  # a paraphrase lands nearer its class


def test_early_stopping_after_patience_epochs_without_improvement(train_root, tmp_path) -> None:  # noqa: ANN001
    config = TrainConfig(**{**SMALL.__dict__, "epochs": 10, "lr": 0.0, "patience": 2})
    record = train(train_root, tmp_path / "stop", config)
    assert [h["epoch"] for h in record["history"]] == [0, 1, 2, 3]  # epoch 1 is best, 2 and 3 are not
    assert record["best_epoch"] == 1 and record["bad_epochs"] == 2


def test_an_open_clip_text_tower_can_be_the_text_side(train_root, tmp_path) -> None:  # noqa: ANN001
    config = TrainConfig(**{**SMALL.__dict__, "epochs": 1, "text": TextSpec(kind="open_clip", model="rsretrieve-tiny")})
    train(train_root, tmp_path / "oc", config)
    encoder = load_encoder(EncoderSpec("rsretrieve", str(tmp_path / "oc" / "best")))
    assert encoder.embed_dim == 64 and encoder.encode_texts(["water"]).shape == (1, 64)
    assert encoder.describe()["text"]["kind"] == "open_clip"


def test_each_tower_takes_its_own_adapter_as_index_names_them(train_root, tmp_path) -> None:  # noqa: ANN001
    settings = {k: v for k, v in SMALL.__dict__.items() if k not in ("tower", "adapters")}
    config = TrainConfig.from_options("spectral-cnn", 16, None, {"s2": "linear", "s1": None}, **{**settings, "epochs": 1})
    train(train_root, tmp_path / "mixed", config)
    towers = read_model_config(tmp_path / "mixed" / "best")[0].towers
    assert towers["s2"].adapter == "linear" and towers["s1"].adapter == "all-bands"
    with pytest.raises(ConfigError, match="--adapter is the old name of --s2-adapter/--s1-adapter"):
        TrainConfig.from_options(None, 16, "rgb", {"s2": "linear", "s1": None})


def test_backbone_is_one_option_in_the_form_of_the_text_encoder() -> None:
    from rsretrieve.training import old_backbone_option

    tower = TowerConfig.from_option("open_clip:ViT-B-32-quickgelu:/w/model.pt", "linear")
    assert (tower.backbone, tower.model, tower.pretrained, tower.adapter) == ("open_clip", "ViT-B-32-quickgelu", "/w/model.pt", "linear")
    assert TowerConfig.from_option("spectral-cnn", width=8) == TowerConfig(width=8)
    with pytest.raises(ConfigError, match="needs an architecture"):
        TowerConfig.from_option("open_clip")
    with pytest.raises(ConfigError, match="only open_clip takes"):
        TowerConfig.from_option("spectral-cnn:ViT-B-32")
    with pytest.warns(UserWarning, match="now --backbone open_clip:ViT-B-32:openai"):
        assert old_backbone_option(None, "ViT-B-32", "openai") == "open_clip:ViT-B-32:openai"
    with pytest.warns(UserWarning):
        assert old_backbone_option("open_clip", "ViT-B-32", None) == "open_clip:ViT-B-32"
    with pytest.raises(ConfigError, match="needs an architecture"):
        old_backbone_option(None, None, "openai")


def test_labels_stored_as_one_string_train_as_index_and_check_read_them(train_root, tmp_path) -> None:  # noqa: ANN001
    import json
    import shutil

    import pyarrow as pa
    import pyarrow.parquet as pq

    root = Path(shutil.copytree(train_root, tmp_path / "joined"))
    table = pq.read_table(root / "metadata.parquet")
    lists = table.column("labels").to_pylist()
    joined = [", ".join(v) if i % 2 else json.dumps(v) for i, v in enumerate(lists)]
    pq.write_table(table.set_column(table.schema.get_field_index("labels"), "labels", pa.array(joined)), root / "metadata.parquet")
    assert [s.labels for s in CrisisLandMark(root, split="train").samples] == [
        s.labels for s in CrisisLandMark(train_root, split="train").samples]
    record = train(root, tmp_path / "run", TrainConfig(**{**SMALL.__dict__, "epochs": 1}))
    assert record["n_fit"] > 0 and record["history"]


def test_an_adapter_for_a_sensor_the_data_lacks_is_an_error(train_root, tmp_path) -> None:  # noqa: ANN001
    import shutil

    import pyarrow as pa
    import pyarrow.parquet as pq

    root = Path(shutil.copytree(train_root, tmp_path / "s2only"))
    table = pq.read_table(root / "metadata.parquet")
    from rsretrieve.datasets.sensors import sensor_of_key

    splits = ["test" if sensor_of_key(k) == "s1" else s
              for k, s in zip(table.column("key").to_pylist(), table.column("split").to_pylist())]
    pq.write_table(table.set_column(table.schema.get_field_index("split"), "split", pa.array(splits)), root / "metadata.parquet")
    settings = {k: v for k, v in SMALL.__dict__.items() if k not in ("tower", "adapters")}
    config = TrainConfig.from_options(None, 16, None, {"s2": None, "s1": "sar"}, **{**settings, "epochs": 1})
    with pytest.raises(ConfigError, match="--s1-adapter: the train split of .* has no s1 samples"):
        train(root, tmp_path / "run", config)


def test_a_damaged_saved_state_is_one_line(run_dir, train_root, tmp_path) -> None:  # noqa: ANN001
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(run_dir[0], copy)
    for damage in ("{truncated", "[]", '{"record": {}}'):
        (copy / "last" / "state.json").write_text(damage)
        with pytest.raises(DataError, match=r"last: the saved training state cannot be resumed|state.json: "):
            train(train_root, copy, SMALL, resume=True)
    (copy / "last" / "optimizer.safetensors").write_bytes(b"\x00" * 3)
    shutil.copy(run_dir[0] / "last" / "state.json", copy / "last" / "state.json")
    with pytest.raises(DataError, match=r"last: the saved training state cannot be resumed"):
        train(train_root, copy, SMALL, resume=True)


HEAD = TrainConfig(epochs=6, batch_size=16, lr=3e-3, warmup_steps=2, patience=10, freeze="encoder",
                   tower=TowerConfig(backbone="open_clip", model="rsretrieve-tiny"), adapters={"s2": "patch-embed:init=mean",
                                                                                               "s1": "patch-embed"})


def test_a_head_trains_alone_and_beats_the_untrained_head(train_root, tmp_path) -> None:  # noqa: ANN001
    """patch-embed heads on a frozen open_clip tower: the loss falls, only the heads (the
    towers' first layers) and projections move, and the trained model ranks the test split
    better than the same model untrained."""
    out = tmp_path / "head"
    record = train(train_root, out, HEAD)
    losses = [h["loss"] for h in record["history"][1:]]
    assert losses[-1] < losses[0]
    config, _ = read_model_config(out / "best")
    assert config.towers["s2"].adapter == "patch-embed:init=mean"
    torch.manual_seed(HEAD.seed)
    untrained = DualEncoder(config)
    trained = load_model(out / "last")
    for sensor in trained.towers:
        before, after = untrained.towers[sensor].backbone, trained.towers[sensor].backbone
        assert not torch.allclose(before.visual.conv1.weight, after.visual.conv1.weight)  # the head trained
        assert before.visual.conv1.in_channels == (12 if sensor == "s2" else 2)
        frozen = {k: v for k, v in after.state_dict().items() if not k.startswith("visual.conv1")}
        torch.testing.assert_close(frozen, {k: v for k, v in before.state_dict().items() if not k.startswith("visual.conv1")})
    save_model(untrained, tmp_path / "untrained", {})
    corpus = CrisisLandMark(train_root)  # the test split: never seen in training
    scores = {}
    for name, folder in (("trained", out / "best"), ("untrained", tmp_path / "untrained")):
        build_index(corpus, build_pipeline(EncoderSpec("rsretrieve", str(folder)), sensors=corpus.sensors), tmp_path / f"i-{name}")
        scores[name] = evaluate_index(tmp_path / f"i-{name}", metrics=["ndcg@10"]).report["results"]["all"]["scores"]["ndcg@10"]
    assert scores["trained"] > scores["untrained"], scores


def test_train_blocks_opens_the_last_blocks_only(train_root, tmp_path) -> None:  # noqa: ANN001
    config = TrainConfig(**{**HEAD.__dict__, "epochs": 1, "freeze": "none", "train_blocks": 1})
    train(train_root, tmp_path / "blocks", config)
    model_config, _ = read_model_config(tmp_path / "blocks" / "last")
    torch.manual_seed(config.seed)
    start, end = DualEncoder(model_config), load_model(tmp_path / "blocks" / "last")
    visual_start, visual_end = start.towers["s2"].backbone.visual, end.towers["s2"].backbone.visual
    assert not torch.allclose(visual_start.transformer.resblocks[-1].mlp.c_fc.weight, visual_end.transformer.resblocks[-1].mlp.c_fc.weight)
    torch.testing.assert_close(visual_start.transformer.resblocks[0].state_dict(), visual_end.transformer.resblocks[0].state_dict())
    with pytest.raises(ConfigError, match="--train-blocks 5: this image tower has 2 blocks"):
        train(train_root, tmp_path / "many", TrainConfig(**{**config.__dict__, "train_blocks": 5}))
    with pytest.raises(ConfigError, match="is a head: it widens an open_clip image tower's first layer"):
        train(train_root, tmp_path / "cnn", TrainConfig(**{**SMALL.__dict__, "adapters": {"s2": "patch-embed"}}))
