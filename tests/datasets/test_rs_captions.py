"""rs-captions reader and fixture: the three published layouts, image formats, and every bad
input named by file and entry."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from rsretrieve.datasets import open_dataset
from rsretrieve.datasets.fixtures.rs_captions import generate_rs_captions
from rsretrieve.datasets.rs_captions import RSCaptions
from rsretrieve.errors import ConfigError, DataError


@pytest.fixture(scope="module")
def karpathy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_rs_captions(tmp_path_factory.mktemp("k") / "bench", n_images=20, seed=0)


def test_fixture_is_deterministic(tmp_path: Path) -> None:
    a = generate_rs_captions(tmp_path / "a", n_images=15, seed=4)
    b = generate_rs_captions(tmp_path / "b", n_images=15, seed=4)
    for path in sorted(a.rglob("*")):
        if path.is_file():
            assert path.read_bytes() == (b / path.relative_to(a)).read_bytes(), path


@pytest.mark.parametrize("layout", ["karpathy", "nwpu", "csv"])
def test_every_layout_reads_the_same_benchmark(tmp_path: Path, layout: str) -> None:
    root = generate_rs_captions(tmp_path / layout, n_images=20, seed=0, layout=layout)
    data = open_dataset("rs-captions", root)
    assert data.layout == layout and data.split == "test"
    reference = RSCaptions(generate_rs_captions(tmp_path / "ref", n_images=20, seed=0))
    # NWPU's images live in category folders: an item is named by its path there
    assert sorted((Path(i.filename).name, i.captions) for i in data.items) == sorted((i.filename, i.captions) for i in reference.items)
    assert all(len(i.captions) == 5 for i in data.items)
    image = data.read_raw(data.items[0].filename)
    assert image.shape == (3, 64, 64) and image.dtype == np.float32 and 0 <= image.min() and image.max() <= 1


def test_png_jpg_and_tiff_images_are_read_as_rgb(karpathy: Path) -> None:
    data = RSCaptions(karpathy, split="train")
    suffixes = {Path(i.filename).suffix for i in data.items}
    assert suffixes == {".png", ".jpg", ".tif"}
    for item in data.items[:3]:
        assert data.open_image(item.filename).mode == "RGB"


def test_gb18030_csv_is_detected(tmp_path: Path) -> None:
    root = generate_rs_captions(tmp_path / "g", n_images=20, seed=0, layout="csv", encoding="gb18030")
    with pytest.raises(UnicodeDecodeError):
        (root / "fixture_test.csv").read_bytes().decode("utf-8")
    data = RSCaptions(root)
    assert data.encoding == "gb18030"
    assert any("there\u2019s" in c for i in data.items for c in i.captions)


def test_splits_and_the_images_option(karpathy: Path, tmp_path: Path) -> None:
    assert len(RSCaptions(karpathy).items) == 4 and len(RSCaptions(karpathy, split="validation").items) == 4
    with pytest.raises(ConfigError, match="unknown split 'tst'"):
        RSCaptions(karpathy, split="tst")
    moved = Path(shutil.copytree(karpathy, tmp_path / "m"))
    (moved / "images").rename(tmp_path / "elsewhere")
    with pytest.raises(ConfigError, match="give --images DIR"):
        RSCaptions(moved)
    assert len(RSCaptions(moved / "dataset_fixture.json", images=tmp_path / "elsewhere").items) == 4


def _edit(root: Path, change) -> Path:  # noqa: ANN001
    path = root / "dataset_fixture.json"
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))
    return root


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: d["images"][-1].update(sentences=[]), r"images\[19\] \(\w+_019\.\w+\): empty caption list"),
    (lambda d: d["images"][-1].update(split="holdout"), r"images\[19\] .*unknown split 'holdout'"),
    (lambda d: d["images"][-1].update(filename="gone.png"), r"image 'gone.png' not found in .*images"),
    (lambda d: d["images"][-1].update(filename="../../etc/passwd"), r"image '../../etc/passwd' is not a name inside the dataset folder"),
    (lambda d: d.pop("images"), r"no 'images' list"),
])
def test_bad_entries_are_named(karpathy: Path, tmp_path: Path, change, message: str) -> None:  # noqa: ANN001
    root = _edit(Path(shutil.copytree(karpathy, tmp_path / "b")), change)
    with pytest.raises(DataError, match=message):
        RSCaptions(root)


def test_a_split_without_images_lists_the_splits_present(karpathy: Path, tmp_path: Path) -> None:
    root = _edit(Path(shutil.copytree(karpathy, tmp_path / "b")),
                 lambda d: [e.update(split="train") for e in d["images"]])
    with pytest.raises(DataError, match="no image of split 'test' \\(its splits: train\\)"):
        RSCaptions(root)


def test_csv_split_is_chosen_by_file_name_and_a_broken_image_is_named(tmp_path: Path) -> None:
    root = generate_rs_captions(tmp_path / "c", n_images=20, seed=0, layout="csv")
    assert RSCaptions(root, split="train").annotations.name == "fixture_train.csv"
    assert len(RSCaptions(root, split="train").items) == 12
    data = RSCaptions(root)
    broken = data.paths[data.items[0].filename]
    broken.write_bytes(b"not an image")
    with pytest.raises(DataError, match=f"{broken}: cannot read image"):
        data.open_image(data.items[0].filename)


def _nwpu(tmp_path: Path) -> tuple[Path, dict]:
    root = generate_rs_captions(tmp_path / "nwpu", n_images=20, seed=0, layout="nwpu")
    annotations = root / "dataset_nwpu.json"
    return root, json.loads(annotations.read_text())


def _with_test(data: dict) -> list[str]:
    return [c for c, entries in data.items() if any(e["split"] == "test" for e in entries)]


def test_every_path_an_annotation_file_names_stays_inside(tmp_path: Path) -> None:
    """Category folders are paths too: `../..` as an NWPU category must not reach a file
    outside the dataset (here a real image planted there)."""
    root, data = _nwpu(tmp_path)
    category = _with_test(data)[0]
    entry = next(e for e in data[category] if e["split"] == "test")
    outside = tmp_path / entry["filename"]
    shutil.copy(next((root / "images" / category).iterdir()), outside)  # an image the attacker wants read
    for bad in ("../..", "..", "/etc", "", "a\\..\\b", "~"):
        moved = {bad: [entry], **{k: v for k, v in data.items() if k != category}}
        (root / "dataset_nwpu.json").write_text(json.dumps(moved))
        with pytest.raises(DataError, match=r"dataset_nwpu.json: (category|image) '.*' is not a name inside the dataset folder"):
            RSCaptions(root)


def test_one_file_name_in_two_categories_is_two_images(tmp_path: Path) -> None:
    root, data = _nwpu(tmp_path)
    first, second = _with_test(data)[:2]
    a = next(e for e in data[first] if e["split"] == "test")
    b = next(e for e in data[second] if e["split"] == "test")
    (root / "images" / second / b["filename"]).rename(root / "images" / second / a["filename"])
    b["filename"] = a["filename"]
    (root / "dataset_nwpu.json").write_text(json.dumps(data))
    dataset = RSCaptions(root)
    keys = {i.filename for i in dataset.items}
    assert {f"{first}/{a['filename']}", f"{second}/{a['filename']}"} <= keys
    assert dataset.paths[f"{first}/{a['filename']}"] != dataset.paths[f"{second}/{a['filename']}"]
    assert not dataset.repeated


def test_a_file_named_twice_is_reported(karpathy: Path, tmp_path: Path) -> None:
    root = _edit(Path(shutil.copytree(karpathy, tmp_path / "twice")),
                 lambda d: d["images"][1].update(filename=d["images"][0]["filename"], split=d["images"][0]["split"]))
    data = RSCaptions(root, split=json.loads((root / "dataset_fixture.json").read_text())["images"][0]["split"])
    assert list(data.repeated.values()) == [2]


@pytest.mark.parametrize("caption", ["   ", "\t\n"])
def test_a_whitespace_caption_is_refused_in_every_layout(karpathy: Path, tmp_path: Path, caption: str) -> None:
    root = _edit(Path(shutil.copytree(karpathy, tmp_path / "ws")), lambda d: d["images"][-1]["sentences"][0].update(raw=caption))
    with pytest.raises(DataError, match=r"images\[19\] .*: empty caption"):
        RSCaptions(root, split="test")


def test_a_gb18030_csv_with_its_byte_order_mark(tmp_path: Path) -> None:
    root = generate_rs_captions(tmp_path / "g", n_images=20, seed=0, layout="csv", encoding="gb18030")
    table = root / "fixture_test.csv"
    table.write_bytes("\ufeff".encode("gb18030") + table.read_bytes())
    data = RSCaptions(root)
    assert data.encoding == "gb18030" and data.items


def test_float_tiffs_neither_wrap_nor_turn_black(tmp_path: Path) -> None:
    from PIL import Image

    from rsretrieve.datasets.rs_captions import _as_rgb

    ramp = np.linspace(-1, 1, 64, dtype=np.float32).reshape(8, 8)
    image = np.asarray(_as_rgb(Image.fromarray(ramp, mode="F"), tmp_path / "x.tif"))[..., 0].astype(int)
    assert image.min() == 0 and image.max() == 255 and np.all(np.diff(image.ravel()) >= 0)  # monotone: no wrap
    unit = np.asarray(_as_rgb(Image.fromarray(np.full((4, 4), 0.5, np.float32), mode="F"), tmp_path / "u.tif"))
    assert np.all(unit == 128)
    with pytest.raises(DataError, match=r"nan.tif: a F image without one finite pixel"):
        _as_rgb(Image.fromarray(np.full((4, 4), np.nan, np.float32), mode="F"), tmp_path / "nan.tif")


def test_a_decompression_bomb_is_one_line(karpathy: Path, tmp_path: Path) -> None:
    import struct
    import zlib

    root = Path(shutil.copytree(karpathy, tmp_path / "bomb"))
    data = RSCaptions(root)
    name = next(i.filename for i in data.items if i.filename.endswith(".png"))
    real = (root / "images" / name).read_bytes()  # a real PNG whose header then claims 20000 x 20000 px
    chunk = b"IHDR" + struct.pack(">II", 20000, 20000) + real[24:29]
    (root / "images" / name).write_bytes(real[:12] + chunk + struct.pack(">I", zlib.crc32(chunk)) + real[33:])
    with pytest.raises(DataError, match=r"claims more pixels than rsretrieve decodes"):
        RSCaptions(root).open_image(name)
