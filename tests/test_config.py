"""Index jobs refuse options that the kind of index asked for cannot honour (never ignored)."""

import pytest

from rsretrieve.config import IndexJob
from rsretrieve.errors import ConfigError


@pytest.mark.parametrize("field, value, option", [
    ("limit", 5, "--limit"), ("sensor", "s1", "--sensor"), ("verify", True, "--verify"),
    ("s2_adapter", "false-color", "--s2-adapter"), ("readers", 2, "--readers"), ("precision", "bf16", "--precision"),
])
def test_image_options_are_refused_for_caption_indexes(field: str, value: object, option: str) -> None:
    with pytest.raises(ConfigError, match=rf"^{option} applies to image indexes; a caption index"):
        IndexJob(what="captions", dataset="git10m", data="x", **{field: value})


def test_strict_and_lenient_mean_something_for_both_kinds() -> None:
    """Images: NaN pixels refused or replaced; captions: a bad row refused or skipped and counted."""
    assert IndexJob(what="captions", dataset="git10m", data="x", strict=False).strict is False
    assert IndexJob(strict=True).strict is True and IndexJob().strict is None


@pytest.mark.parametrize("field, value, option", [("pq", 8, "--pq"), ("sq8", True, "--sq8"), ("train_size", 10, "--train-size")])
def test_caption_options_are_refused_for_image_indexes(field: str, value: object, option: str) -> None:
    with pytest.raises(ConfigError, match=rf"^{option} applies to caption indexes"):
        IndexJob(**{field: value})


def test_several_foreign_options_are_named_together() -> None:
    with pytest.raises(ConfigError, match=r"^--limit, --readers apply to image indexes"):
        IndexJob(what="captions", limit=3, readers=2)
    IndexJob(what="captions", index="hnsw", nprobe=4, batch_size=64)  # shared options pass
