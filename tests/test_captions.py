"""Caption indexes: build (flat, IVF-PQ, HNSW-SQ8), text search, filters, image-to-caption."""

import numpy as np
import pytest

from rsretrieve.captions import CaptionFilter, CaptionIndex, CaptionIndexSettings, build_caption_index, describe_images, search_captions
from rsretrieve.datasets.crisislandmark import Batch, CrisisLandMark
from rsretrieve.datasets.fixtures.git10m import generate_git10m
from rsretrieve.datasets.git10m import Git10M
from rsretrieve.embeddings import build_pipeline
from rsretrieve.encoders import EncoderSpec, load_encoder
from rsretrieve.errors import ConfigError, DataError


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Git10M:
    return Git10M(generate_git10m(tmp_path_factory.mktemp("g") / "git10m", n_rows=600, shards=2, seed=1))


@pytest.fixture(scope="module")
def default():  # noqa: ANN201
    return load_encoder(EncoderSpec())


@pytest.fixture(scope="module")
def flat(data, default, tmp_path_factory):  # noqa: ANN001, ANN201
    out = tmp_path_factory.mktemp("cap") / "flat"
    build_caption_index(data, default, out, CaptionIndexSettings(kind="flat"), batch_size=128)
    return CaptionIndex(out)


def test_flat_caption_search_finds_the_class(flat, default) -> None:  # noqa: ANN001
    hits = search_captions(flat, default, ["a frozen landscape covered in snow"], 5)[0]
    assert len(hits) == 5 and all("snow" in h["caption"] for h in hits)
    assert hits[0]["score"] >= hits[-1]["score"]
    assert flat.manifest["counts"]["total"] == 600


@pytest.mark.parametrize(("settings", "factory"), [
    (CaptionIndexSettings(kind="ivf", nlist=8, nprobe=8, pq=16, pq_bits=4, train_size=400), "IVF8,PQ16x4"),
    (CaptionIndexSettings(kind="hnsw", sq8=True), "HNSW32_SQ8"),
])
def test_compressed_indexes_agree_with_exact_search(data, default, flat, tmp_path, settings, factory) -> None:  # noqa: ANN001
    manifest = build_caption_index(data, default, tmp_path / "idx", settings, batch_size=128)
    assert manifest["index"]["factory"] == factory
    approx = CaptionIndex(tmp_path / "idx")
    queries = ["water near a river", "buildings and a highway", "desert"]
    exact_hits = search_captions(flat, default, queries, 10)
    approx_hits = search_captions(approx, default, queries, 10)
    overlap = np.mean([len({h["row"] for h in a} & {h["row"] for h in e}) / 10 for a, e in zip(approx_hits, exact_hits)])
    assert overlap >= 0.5  # captions repeat, so ties make exact top-10 sets only partly unique


def test_filters_restrict_every_hit(flat, default) -> None:  # noqa: ANN001
    where = CaptionFilter(min_quality=0.5, max_resolution=2.0, bbox=(-60.0, -40.0, 60.0, 60.0))
    hits = search_captions(flat, default, ["forest"], 20, where)[0]
    assert hits
    for hit in hits:
        assert hit["quality"] >= 0.5 and hit["resolution"] <= 2.0
        assert -60 <= hit["lon"] <= 60 and -40 <= hit["lat"] <= 60
    none = search_captions(flat, default, ["forest"], 5, CaptionFilter(min_quality=2.0))[0]
    assert none == []


def test_describe_a_crisislandmark_image(flat, sample_root) -> None:  # noqa: ANN001
    ds = CrisisLandMark(sample_root)
    sample = next(s for s in ds.samples if s.sensor == "s2" and s.labels[0] == "water")
    image = ds.read_sample(sample.key).image
    pipeline = build_pipeline(EncoderSpec(), sensors=("s2",))
    hits = describe_images(flat, pipeline, Batch("s2", [sample.key], image[None], 0), 5)[0]
    assert sum("water" in h["caption"] or "wetland" in h["caption"] for h in hits) >= 3


def test_describe_an_rgb_image_with_open_clip(data, tmp_path) -> None:  # noqa: ANN001
    tiny = load_encoder(EncoderSpec("open_clip", "rsretrieve-tiny"))
    build_caption_index(data, tiny, tmp_path / "tiny", CaptionIndexSettings(kind="flat"))
    pipeline = build_pipeline(EncoderSpec("open_clip", "rsretrieve-tiny"), sensors=("rgb",))
    pixels = data.read_image("git10m_00000001.png").transpose(2, 0, 1)[None].astype(np.float32)
    hits = describe_images(CaptionIndex(tmp_path / "tiny"), pipeline, Batch("rgb", ["x"], pixels, 0), 3)[0]
    assert len(hits) == 3


def test_settings_and_folder_errors(flat, index_dir, tmp_path) -> None:  # noqa: ANN001
    with pytest.raises(ConfigError, match="choose one of --pq and --sq8"):
        CaptionIndexSettings(pq=8, sq8=True)
    with pytest.raises(ConfigError, match="need --index-type ivf or hnsw"):
        CaptionIndexSettings(kind="flat", sq8=True)
    with pytest.raises(ConfigError, match="--bbox"):
        CaptionFilter(bbox=(5.0, 1.0, 10.0, 0.0))  # lat_min above lat_max
    with pytest.raises(ConfigError, match="--min-resolution 10.0 is above --max-resolution 1.0: no caption can pass"):
        CaptionFilter(min_resolution=10.0, max_resolution=1.0)
    with pytest.raises(DataError, match="is an image index; this needs a caption index"):
        CaptionIndex(index_dir)
    with pytest.raises(DataError, match=r"was built differently \(encoder, index changed\); pass --force"):
        build_caption_index(Git10M(flat.manifest["dataset"]["path"]), load_encoder(EncoderSpec("random", "random")), flat.path)


def test_the_same_command_again_reuses_a_current_caption_index(data, default, flat) -> None:  # noqa: ANN001
    """As for image indexes: rerunning a command (a README example, then a docs page) reuses
    what is current; another setting is named."""
    again = build_caption_index(data, default, flat.path, CaptionIndexSettings(kind="flat"), batch_size=128)
    assert again["reused"] and again["counts"] == flat.manifest["counts"]
    with pytest.raises(DataError, match=r"built differently \(lenient changed\)"):
        build_caption_index(data, default, flat.path, CaptionIndexSettings(kind="flat"), lenient=True)


@pytest.mark.parametrize("settings", [
    CaptionIndexSettings(kind="ivf", nlist=8, nprobe=1, pq=16, pq_bits=4, train_size=400),
    CaptionIndexSettings(kind="hnsw", sq8=True, ef_search=16),
])
def test_selective_filters_miss_nothing_on_approximate_indexes(data, default, flat, tmp_path, settings) -> None:  # noqa: ANN001
    build_caption_index(data, default, tmp_path / "idx", settings, batch_size=128)
    approx = CaptionIndex(tmp_path / "idx")
    assert approx.approximate and not flat.approximate
    meta = {c: flat.table.column(c).to_numpy() for c in ("quality", "resolution", "lon", "lat")}
    for where in (CaptionFilter(bbox=(5.0, 43.0, 15.0, 50.0)), CaptionFilter(min_quality=0.9, max_resolution=1.0),
                  CaptionFilter(bbox=(-180.0, -90.0, 0.0, 0.0))):
        passing = int(where.mask(meta).sum())
        for k in (max(passing, 1), passing + 5, 3):
            want = {h["row"] for h in search_captions(flat, default, ["flooded farmland near a river"], k, where)[0]}
            got = {h["row"] for h in search_captions(approx, default, ["flooded farmland near a river"], k, where)[0]}
            if passing <= k:
                assert got == want and len(got) == passing, (where, k)
            else:
                assert len(got) == k


def test_a_box_across_the_antimeridian_wraps_around() -> None:
    meta = {"quality": np.ones(5), "resolution": np.ones(5),
            "lon": np.array([175.0, -175.0, 0.0, 169.0, -171.0]), "lat": np.array([0.0, 5.0, 0.0, 0.0, 11.0])}
    assert CaptionFilter(bbox=(170.0, -10.0, -170.0, 10.0)).mask(meta).tolist() == [True, True, False, False, False]
    assert CaptionFilter.parse(bbox="170,-10,-170,10").bbox == (170.0, -10.0, -170.0, 10.0)


def test_a_filter_that_passes_nothing_says_so_with_the_index_ranges(flat, tmp_path) -> None:  # noqa: ANN001
    from tests.cli.test_cli import invoke

    assert flat.empty_filter_note(CaptionFilter(min_quality=0.0), [[]]) is None and flat.empty_filter_note(CaptionFilter(), [[]]) is None
    note = flat.empty_filter_note(CaptionFilter(min_quality=2.0), [[]])
    assert note.startswith("no caption of the index passes the filters: its quality runs from")
    result = invoke("search", "--index", flat.path, "--text", "water", "--min-quality", 2)
    assert result.exit_code == 0 and "note: no caption of the index passes the filters" in result.stderr
