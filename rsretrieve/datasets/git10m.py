"""Git-10M: remote-sensing image-caption pairs in parquet shards, read as a stream.

Columns (dataset card): image (PNG bytes, as Hugging Face stores images: a struct with
``bytes`` and ``path``), img_name, img_quality_score, caption, caption_length, resolution,
Google_location ("Z_X_Y" web-mercator tile). Longitude/latitude come from the tile with the
card's formula (the tile's north-west corner); the tile's resolution is 2 ** (17 - Z) m.
Shards are read batch by batch (pyarrow ``iter_batches``): 10 M rows never sit in memory.
"""

from __future__ import annotations

import hashlib
import io
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rsretrieve.datasets.base import Batch, Dataset
from rsretrieve.errors import DataError

COLUMNS = ("image", "img_name", "img_quality_score", "caption", "caption_length", "resolution", "Google_location")
TEXT_COLUMNS = COLUMNS[1:]


def tile_to_lonlat(z: int, x: float, y: float) -> tuple[float, float]:
    """Web-mercator tile (z, x, y) -> (longitude, latitude) in degrees (the card's formula)."""
    n = 2.0**z
    lon = x / n * 360.0 - 180.0
    lat = math.degrees(math.atan(math.sinh(math.pi * (1 - 2.0 * y / n))))
    return lon, lat


def tile_resolution(z: int) -> float:
    return 2.0 ** (17 - z)


def parse_location(value: object, where: str) -> tuple[int, int, int]:
    """'Z_X_Y' -> (z, x, y), validated."""
    parts = str(value).split("_")
    try:
        z, x, y = (int(p) for p in parts)
    except ValueError:
        raise DataError(f"{where}: Google_location {value!r} is not 'Z_X_Y' integers") from None
    if not (0 <= z <= 30 and 0 <= x < 2**z and 0 <= y < 2**z):
        raise DataError(f"{where}: Google_location {value!r} is outside the tile grid of level {z}")
    return z, x, y


@dataclass(frozen=True)
class CaptionBatch:
    """Metadata of a batch of rows, with the location decoded."""

    img_name: list[str]
    caption: list[str]
    quality: np.ndarray
    resolution: np.ndarray
    zoom: np.ndarray
    lon: np.ndarray
    lat: np.ndarray
    skipped: tuple[dict[str, Any], ...] = ()  # rows left out with --lenient: shard, row, img_name, reason


class Git10M(Dataset):
    """A folder of Git-10M parquet shards (or one shard): image-caption pairs, one split
    (``train``, as released), read as caption batches and, one by one, as RGB images."""

    name = "git10m"
    splits = ("train",)

    def __init__(self, root: Path | str, split: str | None = None) -> None:
        import pyarrow.parquet as pq

        self.root = Path(root)
        self.split = self.check_split(split)
        if self.root.is_file():
            self.shards = [self.root]
        elif self.root.is_dir():
            self.shards = sorted(self.root.rglob("*.parquet"))
        else:
            raise DataError(f"Git-10M data {self.root} not found")
        if not self.shards:
            raise DataError(f"{self.root}: no .parquet shards")
        self.rows = 0
        for shard in self.shards:
            try:
                meta = pq.ParquetFile(shard)
            except Exception as exc:  # noqa: BLE001 - pyarrow raises many types for bad files
                raise DataError(f"{shard}: cannot read parquet: {exc}") from exc
            missing = [c for c in TEXT_COLUMNS if c not in meta.schema_arrow.names]
            if missing:
                raise DataError(f"{shard}: missing column(s) {', '.join(missing)}")
            self.rows += meta.metadata.num_rows

    def fingerprint(self) -> str:
        """Name, size and modification time of every shard: a shard rewritten in place is never
        taken for the one a caption index was built from."""
        digest = hashlib.sha256()
        for shard in self.shards:
            stat = shard.stat()
            digest.update(f"{shard.relative_to(self.root) if shard != self.root else shard.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
        return digest.hexdigest()

    def iter_captions(self, batch_size: int, lenient: bool = False) -> Iterator[CaptionBatch]:
        """Caption batches in shard order. A row whose caption is empty or not UTF-8 text is an
        error naming its shard, row and img_name; ``lenient`` skips it and lists it in ``skipped``."""
        import pyarrow.parquet as pq

        for shard in self.shards:
            for start, batch in _enumerate_batches(pq.ParquetFile(shard), batch_size):
                yield _decode(batch, shard, start, lenient)

    def sensor_of(self, key: str) -> str:
        return "rgb"

    def iter_image_batches(self, batch_size: int, limit: int | None = None) -> Iterator[Batch]:
        """The images of the first ``limit`` rows (all: None) in shard order, as batches of one
        image size, pixels as ``read_batch`` gives them; rows without image bytes are skipped."""
        import pyarrow.parquet as pq
        from PIL import Image

        names: list[str] = []
        pixels: list[np.ndarray] = []
        seen = 0
        for shard in self.shards:
            for part in pq.ParquetFile(shard).iter_batches(batch_size=batch_size, columns=["img_name", "image"]):
                for name, cell in zip(part.column("img_name").to_pylist(), part.column("image").to_pylist()):
                    if limit is not None and seen >= limit:
                        break
                    seen += 1
                    data = cell.get("bytes") if isinstance(cell, dict) else cell
                    if not data:
                        continue
                    try:
                        image = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), np.float32).transpose(2, 0, 1)
                    except OSError as exc:
                        raise DataError(f"{shard}: image '{name}' cannot be decoded: {exc}") from None
                    if pixels and (image.shape != pixels[0].shape or len(pixels) == batch_size):
                        yield Batch("rgb", names, np.stack(pixels), 0)
                        names, pixels = [], []
                    names.append(str(name))
                    pixels.append(image)
        if pixels:
            yield Batch("rgb", names, np.stack(pixels), 0)

    def read_raw(self, key: str) -> np.ndarray:
        """The RGB pixels (3, H, W), 8-bit values, of image ``key``."""
        return self.read_image(key).transpose(2, 0, 1)

    def read_image(self, img_name: str) -> np.ndarray:
        """The RGB pixels (H, W, 3) uint8 of one image, found by name (a scan of the shards)."""
        import pyarrow.parquet as pq
        from PIL import Image

        for shard in self.shards:
            table = pq.read_table(shard, columns=["img_name", "image"], filters=[("img_name", "=", img_name)])
            if table.num_rows:
                cell = table.column("image")[0].as_py()
                data = cell.get("bytes") if isinstance(cell, dict) else cell
                if not data:
                    raise DataError(f"{shard}: image '{img_name}' has no bytes")
                return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
        raise DataError(f"{self.root}: no image named '{img_name}'")


def _enumerate_batches(parquet, batch_size: int):  # noqa: ANN001, ANN202
    start = 0
    for batch in parquet.iter_batches(batch_size=batch_size, columns=list(TEXT_COLUMNS)):
        yield start, batch
        start += batch.num_rows


def _texts(column: Any) -> list[Any]:
    """A text column as Python values: str, or bytes where the column is binary or a value is
    not valid UTF-8 (pyarrow does not validate strings it did not write)."""
    import pyarrow as pa

    try:
        return column.to_pylist()
    except UnicodeDecodeError:
        return column.cast(pa.large_binary() if pa.types.is_large_string(column.type) else pa.binary()).to_pylist()


def caption_problem(value: Any) -> tuple[str | None, str | None]:
    """A caption value -> (its text, None), or (None, what is wrong with it)."""
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError as exc:
            return None, f"is not UTF-8 text (byte 0x{value[exc.start]:02x} at offset {exc.start})"
    if not isinstance(value, str) or not value.strip():
        return None, "is empty"
    return value, None


def _decode(batch: Any, shard: Path, start: int, lenient: bool = False) -> CaptionBatch:
    names = [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in _texts(batch.column("img_name"))]
    captions, keep, skipped = [], [], []
    for i, value in enumerate(_texts(batch.column("caption"))):
        text, problem = caption_problem(value)
        if problem is None:
            captions.append(text)
            keep.append(i)
            continue
        if not lenient:
            raise DataError(f"{shard}: row {start + i} (img_name '{names[i]}'): field 'caption' {problem}; "
                            "fix the row, or pass --lenient to skip such rows and count them")
        skipped.append({"shard": str(shard), "row": start + i, "img_name": names[i], "reason": f"caption {problem}"})
    if skipped:
        batch = batch.take(keep)
        names = [names[i] for i in keep]
    data = batch.select(["img_quality_score", "Google_location"]).to_pydict()
    n = batch.num_rows
    zoom, lon, lat = np.empty(n, np.int16), np.empty(n, np.float64), np.empty(n, np.float64)
    for i, value in enumerate(data["Google_location"]):
        z, x, y = parse_location(value, f"{shard}: row {start + keep[i]}")
        zoom[i] = z
        lon[i], lat[i] = tile_to_lonlat(z, x, y)
    return CaptionBatch(
        img_name=names,
        caption=captions,
        quality=np.asarray(data["img_quality_score"], np.float32),
        resolution=np.asarray([tile_resolution(int(z)) for z in zoom], np.float32),
        zoom=zoom,
        lon=lon,
        lat=lat,
        skipped=tuple(skipped),
    )
