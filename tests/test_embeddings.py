"""Encoding precision: bf16 under autocast stays within the issue's bounds of fp32 on the
embedded sample, is recorded in the manifest, and an index of one precision is never reused
for another."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rsretrieve.config import IndexJob
from rsretrieve.datasets.fixtures.crisislandmark import ensure_default_sample
from rsretrieve.errors import ConfigError, DataError
from rsretrieve.evaluate import evaluate_index
from rsretrieve.index import load_index
from rsretrieve.jobs import run_index_job


@pytest.fixture(scope="module")
def fp32_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("fp32") / "idx"
    run_index_job(IndexJob(data=str(ensure_default_sample())), out)
    return out


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_half_precision_stays_close_to_fp32(fp32_index, tmp_path, precision) -> None:  # noqa: ANN001
    out = tmp_path / precision
    manifest = run_index_job(IndexJob(data=str(ensure_default_sample()), precision=precision), out)
    assert manifest["precision"] == precision
    full, half = load_index(fp32_index), load_index(out)
    assert full.keys == half.keys
    cosine = np.sum(np.asarray(full.embeddings) * np.asarray(half.embeddings), axis=1)
    assert not np.array_equal(full.embeddings, half.embeddings)  # autocast really ran
    assert cosine.min() >= 0.999, cosine.min()
    scores = [evaluate_index(folder, metrics=["ndcg@10"]).report["results"]["all"]["scores"]["ndcg@10"]
              for folder in (fp32_index, out)]
    assert abs(scores[0] - scores[1]) <= 0.005, scores


def test_an_index_of_one_precision_is_not_reused_for_another(fp32_index) -> None:  # noqa: ANN001
    assert load_index(fp32_index).manifest["precision"] == "fp32"
    with pytest.raises(DataError, match="built differently \\(precision fp32 -> bf16\\); pass --force"):
        run_index_job(IndexJob(data=str(ensure_default_sample()), precision="bf16"), fp32_index)


def test_precision_needs_a_torch_encoder_and_a_known_name(sample_root, tmp_path) -> None:  # noqa: ANN001
    with pytest.raises(ConfigError, match="--precision bf16 needs a torch encoder"):
        run_index_job(IndexJob(data=str(sample_root), model="random", precision="bf16"), tmp_path / "x")
    with pytest.raises(ConfigError, match="--precision must be one of fp32, bf16, fp16, got 'int8'"):
        IndexJob(precision="int8")
    with pytest.raises(ConfigError, match="--batch-size must be a whole number of at least 1, got 0"):
        IndexJob(batch_size=0)


class _SmallMemory:
    """A torch encoder that runs out of (CUDA) memory above three images a pass."""

    adapters_bundled = True

    def __init__(self) -> None:
        import torch

        from rsretrieve.encoders import EncoderSpec

        self.device = torch.device("cpu")
        self.spec = EncoderSpec("test", "small-memory")
        self.passes: list[int] = []

    def encode_images(self, pixels, sensor):  # noqa: ANN001, ANN201
        import torch

        if len(pixels) > 3:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        self.passes.append(len(pixels))
        return pixels.flatten(1)[:, :4].numpy()


def test_out_of_memory_halves_the_forward_batch_with_a_warning() -> None:
    from rsretrieve.datasets.base import Batch
    from rsretrieve.embeddings import ImagePipeline
    from rsretrieve.errors import RsRetrieveWarning

    encoder = _SmallMemory()
    pipeline = ImagePipeline(encoder, {}, {"s1": "bundled"})
    images = np.arange(10 * 2 * 4 * 4, dtype=np.float32).reshape(10, 2, 4, 4)
    with pytest.warns(RsRetrieveWarning, match="CUDA out of memory at 10 images a forward pass; continuing with 5"):
        vectors = pipeline.embed(Batch("s1", [str(i) for i in range(10)], images, 0))
    np.testing.assert_array_equal(vectors, images.reshape(10, -1)[:, :4])
    assert pipeline.forward_batch == 2 and encoder.passes == [2, 2, 2, 2, 2]


def test_weights_holding_a_nan_are_refused_naming_encoder_and_key(sample_root, tmp_path) -> None:  # noqa: ANN001
    """One NaN in a weight makes every embedding NaN; an index of NaN rows ranks nothing and,
    before this check, was built without a word."""
    from safetensors.torch import save_file

    from rsretrieve.encoders import load_encoder
    from tests.cli.test_cli import assert_user_error, invoke
    from tests.conftest import TINY

    model = load_encoder(TINY).model
    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    name = next(k for k in state if k.startswith("visual.") and state[k].is_floating_point() and state[k].ndim > 1)
    state[name].view(-1)[0] = float("nan")
    weights = tmp_path / "nan.safetensors"
    save_file(state, str(weights))
    result = invoke("index", "--data", sample_root, "--model", "rsretrieve-tiny", "--pretrained", weights, "--limit", "6",
                    "--out", tmp_path / "idx")
    assert_user_error(result, r"open_clip:rsretrieve-tiny \[.*nan.safetensors\] gave non-finite embeddings for \d+ of \d+ keys "
                              r"of a batch \(first: key '.+'\)")
    assert not (tmp_path / "idx").exists()
