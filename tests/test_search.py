"""Search: top-k runs, per-sensor search, run files, and the encoder/manifest guard."""

import numpy as np
import pytest

from rsretrieve.encoders import EncoderSpec, load_encoder
from rsretrieve.errors import ConfigError, DataError
from rsretrieve.index import load_index
from rsretrieve.search import encoder_for_index, search
from tests.conftest import TINY


@pytest.fixture(scope="module")
def loaded(index_dir):  # noqa: ANN001, ANN201
    return load_index(index_dir)


def test_top_k_is_sorted_and_matches_brute_force(loaded) -> None:  # noqa: ANN001
    encoder = encoder_for_index(loaded)
    run = search(loaded, encoder, {"q": "satellite image of trees"}, 5)
    scores = [s for _, s in run.ranked("q")]
    assert len(scores) == 5 and scores == sorted(scores, reverse=True)
    brute = loaded.embeddings @ encoder.encode_texts(["satellite image of trees"])[0]
    assert [d for d, _ in run.ranked("q")] == [loaded.keys[i] for i in np.argsort(-brute)[:5]]


def test_sensor_restricted_search(loaded) -> None:  # noqa: ANN001
    encoder = encoder_for_index(loaded)
    for sensor in ("s1", "s2"):
        run = search(loaded, encoder, {"q": "water"}, 1000, sensor)
        wanted = {k for k, s in zip(loaded.keys, loaded.sensors) if s == sensor}
        assert {d for d, _ in run.ranked("q")} == wanted  # k larger than the slice: the whole slice, nothing else


def test_k_larger_than_corpus_returns_the_corpus(loaded) -> None:  # noqa: ANN001
    run = search(loaded, encoder_for_index(loaded), {"q": "water"}, 10_000)
    assert len(run.ranked("q")) == len(loaded.keys)
    with pytest.raises(ConfigError, match="-k must be at least 1"):
        search(loaded, encoder_for_index(loaded), {"q": "water"}, 0)


def test_a_different_encoder_than_the_index_is_refused(loaded) -> None:  # noqa: ANN001
    with pytest.raises(ConfigError, match=r"was built with open_clip:rsretrieve-tiny \[random init \(seed 0\)\]; you asked for .*seed 3"):
        encoder_for_index(loaded, EncoderSpec(backend="open_clip", model="rsretrieve-tiny", seed=3))
    assert encoder_for_index(loaded, TINY).weights_sha256 == load_encoder(TINY).weights_sha256


def test_changed_weights_are_detected(loaded, monkeypatch) -> None:  # noqa: ANN001
    import copy

    tampered = copy.deepcopy(loaded)
    tampered.manifest["encoder"]["weights_sha256"] = "0" * 64
    with pytest.raises(DataError, match="weights_sha256 mismatch"):
        encoder_for_index(tampered)


def test_query_by_example_ranks_the_patch_first_and_can_drop_it(index_dir) -> None:  # noqa: ANN001
    from rsretrieve.errors import ConfigError, DataError
    from rsretrieve.index import load_index
    from rsretrieve.search import like_patch, search_folder

    index = load_index(index_dir)
    key = index.keys[3]
    run = like_patch(index, key, 5)
    ranked = [doc for doc, _ in run.ranked("like")]
    assert ranked[0] == key and run.ranked("like")[0][1] == pytest.approx(1.0, abs=1e-5)
    scores = np.asarray(index.embeddings) @ np.asarray(index.embeddings[3])
    assert ranked == [index.keys[i] for i in np.argsort(-scores, kind="stable")[:5]]
    without = [doc for doc, _ in like_patch(index, key, 5, exclude_self=True).ranked("like")]
    assert without == ranked[1:] + [index.keys[int(np.argsort(-scores, kind="stable")[5])]]
    with pytest.raises(DataError, match="--like: key 'nope' is not in index"):
        like_patch(index, "nope", 5)
    with pytest.raises(ConfigError, match="--exclude-self drops the query patch of --like KEY"):
        search_folder(index_dir, {"text": "x"}, 5, exclude_self=True)
    with pytest.raises(ConfigError, match="--device has no use with --like"):
        search_folder(index_dir, {"like": key}, 5, like=key, device="cpu")
    with pytest.raises(ConfigError, match="was built with .*you asked for"):
        search_folder(index_dir, {"like": key}, 5, like=key, requested=EncoderSpec("random", "random"))
