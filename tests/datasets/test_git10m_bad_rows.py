"""Git-10M rows that cannot be captions: invalid UTF-8 in a string column, Latin-1 bytes in a
binary one, empty captions. An error names the shard, the real row and img_name and the
reason; ``--lenient`` skips such rows and counts them; repeated img_names are reported."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rsretrieve.datasets.fixtures.git10m import generate_git10m
from rsretrieve.datasets.git10m import Git10M
from rsretrieve.errors import DataError
from tests.cli.test_cli import assert_user_error, invoke


def _rewrite(shard: Path, caption: pa.Array, names: list[str] | None = None) -> None:
    table = pq.read_table(shard)
    table = table.set_column(table.schema.get_field_index("caption"), "caption", caption)
    if names is not None:
        table = table.set_column(table.schema.get_field_index("img_name"), "img_name", pa.array(names))
    pq.write_table(table, shard)


def _shard(tmp_path: Path) -> tuple[Path, list[str], list[str]]:
    root = generate_git10m(tmp_path / "git", n_rows=12, shards=1, seed=0, image_size=0)
    shard = sorted(root.glob("*.parquet"))[0]
    table = pq.read_table(shard, columns=["caption", "img_name"])
    return shard, table.column("caption").to_pylist(), table.column("img_name").to_pylist()


def test_invalid_utf8_in_a_string_column_names_the_row(tmp_path: Path) -> None:
    shard, captions, names = _shard(tmp_path)
    raw = [c.encode() for c in captions]
    raw[7] = b"flooded \xff fields"
    # a string column holding bytes that are not UTF-8, as a writer that does not validate leaves it
    bad = pa.Array.from_buffers(pa.string(), len(raw), pa.array(raw, pa.binary()).buffers())
    _rewrite(shard, bad)
    with pytest.raises(DataError, match=rf"row 7 \(img_name '{names[7]}'\): field 'caption' is not UTF-8 text \(byte 0xff at offset 8\)"):
        list(Git10M(shard.parent).iter_captions(5))
    batches = list(Git10M(shard.parent).iter_captions(5, lenient=True))
    assert sum(len(b.caption) for b in batches) == 11
    assert [s["row"] for b in batches for s in b.skipped] == [7]
    assert names[7] not in [n for b in batches for n in b.img_name]


def test_binary_latin1_and_empty_captions_give_the_real_row_and_reason(tmp_path: Path) -> None:
    shard, captions, names = _shard(tmp_path)
    raw = [c.encode() for c in captions]
    raw[3] = "prés inondés".encode("latin-1")
    raw[9] = b"   "
    _rewrite(shard, pa.array(raw, pa.binary()))
    with pytest.raises(DataError, match=rf"row 3 \(img_name '{names[3]}'\): field 'caption' is not UTF-8 text \(byte 0xe9"):
        list(Git10M(shard.parent).iter_captions(100))
    batches = list(Git10M(shard.parent).iter_captions(4, lenient=True))
    assert [(s["row"], s["reason"]) for b in batches for s in b.skipped] == [(3, "caption is not UTF-8 text (byte 0xe9 at offset 2)"),
                                                                           (9, "caption is empty")]
    assert [c for b in batches for c in b.caption] == [c for i, c in enumerate(captions) if i not in (3, 9)]  # valid bytes decoded


def test_lenient_caption_index_counts_skipped_rows_and_repeated_names(tmp_path: Path) -> None:
    shard, captions, names = _shard(tmp_path)
    raw = [c.encode() for c in captions]
    raw[5] = b"\xff\xfe"
    _rewrite(shard, pa.array(raw, pa.binary()), [names[0], *names[1:11], names[0]])  # the last row repeats the first's name
    args = ("index", "--dataset", "git10m", "--what", "captions", "--data", shard.parent, "--model", "random", "--out")
    assert_user_error(invoke(*args, tmp_path / "strict", "--strict"), r"row 5 \(img_name .*\): field 'caption' is not UTF-8 text .*--lenient")
    assert not (tmp_path / "strict").exists()
    result = invoke(*args, tmp_path / "cap")  # lenient by default, as for images: skipped and counted
    assert result.exit_code == 0, result.output
    assert "skipped 1 rows" in result.stdout and "row 5" in result.stdout
    assert f"1 img_name values occur more than once (e.g. '{names[0]}' (2 rows))" in result.stderr
    manifest = json.loads((tmp_path / "cap" / "manifest.json").read_text())
    assert manifest["counts"] == {"total": 11, "skipped": 1, "duplicate_img_names": 1}
    assert manifest["skipped_rows"]["examples"][0]["row"] == 5
