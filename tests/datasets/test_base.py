"""The dataset contract: every registered reader implements it, declares its splits, says where
its topics are, and refuses options and splits it does not have with a ConfigError."""

from pathlib import Path

import numpy as np
import pytest

from rsretrieve.config import IndexJob
from rsretrieve.datasets import DATASETS, dataset_class, open_dataset, topic_paths
from rsretrieve.datasets.base import Batch, Dataset, PatchDataset
from rsretrieve.datasets.fixtures import FIXTURES, write_fixture
from rsretrieve.errors import ConfigError
from rsretrieve.jobs import open_job_dataset


@pytest.fixture(scope="module")
def roots(tmp_path_factory: pytest.TempPathFactory, sample_root: Path) -> dict[str, Path]:
    from rsretrieve.datasets.bigearthnet_txt import build_task

    base = tmp_path_factory.mktemp("contract")
    ben = write_fixture("bigearthnet-txt", base / "ben", 8)
    build_task(ben / "BigEarthNet.txt.parquet", ben / "lmdb", "lmdb", base / "task", ("bench", "test", "train"))
    return {"crisislandmark": sample_root, "git10m": write_fixture("git10m", base / "git10m", 6), "bigearthnet-txt": base / "task",
            "rs-captions": write_fixture("rs-captions", base / "rs", 10)}


def test_every_reader_implements_the_contract_and_has_a_fixture() -> None:
    assert DATASETS.names() == FIXTURES.names() == ["bigearthnet-txt", "crisislandmark", "git10m", "rs-captions"]
    for name in DATASETS.names():
        cls = dataset_class(name)
        assert issubclass(cls, Dataset) and cls.name == name and cls.splits
        assert not getattr(cls, "__abstractmethods__", None), f"{name} leaves {cls.__abstractmethods__} abstract"


def test_one_item_of_every_reader_reads_as_a_batch(roots: dict[str, Path]) -> None:
    for name, root in roots.items():
        dataset = open_dataset(name, root)
        assert dataset.split == dataset.splits[0]
        key = (dataset.samples[0].key if isinstance(dataset, PatchDataset)
               else dataset.items[0].filename if name == "rs-captions" else "git10m_00000001.png")
        batch = dataset.read_batch([key])
        assert isinstance(batch, Batch) and batch.keys == [key] and batch.images.dtype == np.float32
        assert batch.images[0].shape == dataset.read_raw(key).shape
        assert batch.sensor == dataset.sensor_of(key)


def test_topics_are_asked_of_the_format(roots: dict[str, Path]) -> None:
    root = roots["crisislandmark"]
    assert topic_paths("crisislandmark", root) == (root / "queries.jsonl", root / "qrels")
    assert open_dataset("bigearthnet-txt", roots["bigearthnet-txt"]).qrels_path == roots["bigearthnet-txt"] / "qrels"
    assert open_dataset("git10m", roots["git10m"]).queries_path is None
    with pytest.raises(ConfigError, match="dataset format 'git10m' ships no queries/qrels; give --queries and --qrels"):
        topic_paths("git10m", roots["git10m"])


def test_options_and_splits_a_format_does_not_have_are_config_errors(roots: dict[str, Path]) -> None:
    with pytest.raises(ConfigError, match=r"unknown split 'test' for dataset format 'git10m'\. .*Its splits: train"):
        open_dataset("git10m", roots["git10m"], split="test")
    with pytest.raises(ConfigError, match="dataset format 'git10m' has no option 'sensors'"):
        open_dataset("git10m", roots["git10m"], sensors=("s2",))
    # a task folder holds one corpus: a split it does not have is refused, not ignored
    with pytest.raises(ConfigError, match="unknown split 'train' for dataset format 'bigearthnet-txt'"):
        open_dataset("bigearthnet-txt", roots["bigearthnet-txt"], split="train")
    assert open_dataset("bigearthnet-txt", roots["bigearthnet-txt"], split="corpus").split == "test"
    with pytest.raises(ConfigError, match="is not an image corpus: index its captions with --what captions"):
        open_job_dataset(IndexJob(dataset="git10m", data=str(roots["git10m"])))


def test_misspelt_formats_get_did_you_mean(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown dataset 'crisislandmak'. Did you mean 'crisislandmark'"):
        open_dataset("crisislandmak", tmp_path)
    with pytest.raises(ConfigError, match="unknown fixture format 'bigearthnet'. Did you mean 'bigearthnet-txt'"):
        write_fixture("bigearthnet", tmp_path / "x", 8)
    assert dataset_class("bigearthnet") is dataset_class("bigearthnet-txt")  # name in older manifests


def test_a_one_off_read_of_a_key_the_dataset_does_not_list_is_named(roots: dict[str, Path]) -> None:
    from rsretrieve.errors import DataError

    with pytest.raises(DataError, match="key 'benv2s2_999999' is not a sample of this dataset \\(not in metadata.parquet\\)"):
        open_dataset("crisislandmark", roots["crisislandmark"]).read_batch(["benv2s2_999999"])
    with pytest.raises(DataError, match="no image named 'nope.png'"):
        open_dataset("git10m", roots["git10m"]).read_batch(["nope.png"])
    with pytest.raises(DataError, match="patch 'S2A_none' not in the LMDB"):
        open_dataset("bigearthnet-txt", roots["bigearthnet-txt"]).read_batch(["S2A_none"])
