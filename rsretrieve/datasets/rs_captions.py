"""Remote-sensing caption benchmarks (RSICD, RSITMD, UCM-Captions, Sydney-Captions,
NWPU-Captions) in the three layouts their releases and papers use:

- Karpathy JSON, ``dataset_*.json``: ``{"images": [{"filename", "split", "imgid", "sentids",
  "sentences": [{"raw", "sentid", ...}]}]}`` (RSICD, RSITMD, UCM, Sydney);
- NWPU-Captions' ``dataset_nwpu.json``: ``{category: [{"filename", "split", "raw",
  "raw_1".."raw_4", ...}]}``, images in one folder per category;
- GeoRSCLIP's CSV, ``<name>_<split>.csv`` with columns ``filename,title`` (one caption per
  row; RSICD's is in gb18030, so the encoding is detected: UTF-8 first, then gb18030).

Images (TIFF, JPG or PNG, read as RGB) are found in ``--images DIR``, else in the folder
beside the annotations named ``images`` or ``*_images``; NWPU's also in ``DIR/<category>/``.
The default split is ``test``, the split the papers report. Items keep the file's order.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rsretrieve.datasets.base import Dataset
from rsretrieve.errors import ConfigError, DataError, warn

LAYOUTS = ("karpathy", "nwpu", "csv")
SPLITS = ("test", "train", "val")
SPLIT_ALIASES = {"validation": "val", "dev": "val"}
IMAGE_SUFFIXES = (".tif", ".tiff", ".jpg", ".jpeg", ".png")
CSV_ENCODINGS = ("utf-8-sig", "gb18030")
NWPU_FIELDS = ("raw", "raw_1", "raw_2", "raw_3", "raw_4")


@dataclass(frozen=True)
class CaptionedImage:
    """One image of the benchmark with its captions, as the annotation file lists them."""

    filename: str
    captions: tuple[str, ...]
    category: str | None = None  # NWPU's scene class (its image sub-folder)


class RSCaptions(Dataset):
    """A caption benchmark at ``root`` (its folder, or the annotation file itself), one split.

    ``items`` holds the split's images in file order; a CSV's rows of one filename are one
    item. ``encoding`` is what a CSV was read as."""

    name = "rs-captions"
    splits = SPLITS
    split_aliases = SPLIT_ALIASES

    def __init__(self, root: Path | str, split: str | None = None, images: Path | str | None = None) -> None:
        self.root = Path(root)
        self.split = self.check_split(split)
        self.annotations, self.layout = find_annotations(self.root, self.split)
        self.folder = self.annotations.parent
        self.encoding = "utf-8"
        if self.layout == "csv":
            listed, self.encoding = _read_csv(self.annotations)
        else:
            listed = _read_json(self.annotations, self.layout)
        chosen = [item for item, split in listed if split == self.split or self.layout == "csv"]
        if not chosen:
            present = sorted({split for _, split in listed})
            raise DataError(f"{self.annotations}: no image of split '{self.split}' (its splits: {', '.join(present) or 'none'})")
        self.images_dir = _images_dir(self.folder, images)
        self.paths: dict[str, Path] = {}
        self.items = []
        for item in chosen:  # each item named by its file's path under images_dir: NWPU's name.jpg of two categories are two
            key, path = self._locate(item)
            self.paths[key] = path
            self.items.append(dataclasses.replace(item, filename=key))
        self.repeated = _repeated(self.items)

    def _locate(self, item: CaptionedImage) -> tuple[str, Path]:
        """The item's path under ``images_dir`` (as a key) and on disk. Every path the
        annotation file names, file names and NWPU's category folders alike, must stay inside
        ``images_dir``."""
        name = _inside(self.annotations, "image", item.filename)
        candidates = [name]
        if item.category is not None:
            candidates.append(_inside(self.annotations, "category", item.category) / name)
        for relative in candidates:
            path = self.images_dir / relative
            if path.is_file():
                return relative.as_posix(), path
        raise DataError(f"{self.annotations}: image '{item.filename}' not found in {self.images_dir}"
                        + (f" (nor in {self.images_dir / item.category})" if item.category else ""))

    def fingerprint(self) -> str:
        """The annotation file's bytes and each image's name and size."""
        digest = hashlib.sha256(self.annotations.read_bytes())
        for name, path in sorted(self.paths.items()):
            digest.update(f"{name}\0{path.stat().st_size}\0".encode())
        return digest.hexdigest()

    def open_image(self, filename: str) -> Any:
        """The image ``filename`` of the split as an RGB PIL image (what open_clip's
        preprocessing takes); an unreadable file is an error naming it."""
        from PIL import Image, UnidentifiedImageError

        path = self.paths.get(filename)
        if path is None:
            raise DataError(f"{self.annotations}: no image '{filename}' in split '{self.split}'")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(path) as image:
                    return _as_rgb(image, path)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise DataError(f"{path}: the image header claims more pixels than rsretrieve decodes "
                            f"({Image.MAX_IMAGE_PIXELS:,} px, PIL's decompression-bomb limit)") from None
        except (UnidentifiedImageError, OSError, SyntaxError) as exc:
            raise DataError(f"{path}: cannot read image: {exc}") from None

    def read_raw(self, key: str) -> np.ndarray:
        """The image as (3, H, W) float32 in [0, 1]."""
        return np.asarray(self.open_image(key), np.float32).transpose(2, 0, 1) / 255.0

    def sensor_of(self, key: str) -> str:
        return "rgb"


def _inside(annotations: Path, what: str, name: str) -> Path:
    """``name``, a relative path the annotation file gives, refused when it could leave the
    images folder: absolute, with a ``..`` part, empty, or holding a NUL or backslash."""
    path = Path(name)
    if (not name.strip() or path.is_absolute() or ".." in path.parts or "\0" in name or "\\" in name
            or path.parts[:1] == ("~",)):
        raise DataError(f"{annotations}: {what} '{name}' is not a name inside the dataset folder")
    return path


def _repeated(items: list[CaptionedImage]) -> dict[str, int]:
    """Files that more than one entry of the split names, with how many entries do."""
    counts: dict[str, int] = {}
    for item in items:
        counts[item.filename] = counts.get(item.filename, 0) + 1
    return {name: n for name, n in counts.items() if n > 1}


def find_annotations(root: Path, split: str) -> tuple[Path, str]:
    """The annotation file at ``root`` and its layout. A folder holds one ``dataset_*.json``
    or CSVs named by split (``*_test.csv``)."""
    if root.is_file():
        return root, _layout_of(root)
    if not root.is_dir():
        raise DataError(f"caption benchmark {root} not found")
    found = sorted(root.glob("dataset_*.json"))
    if len(found) > 1:
        raise DataError(f"{root}: several annotation files ({', '.join(p.name for p in found)}); give one as --data")
    if found:
        return found[0], _layout_of(found[0])
    tables = sorted(p for p in root.glob("*.csv") if p.stem.lower().endswith(f"_{split}") or p.stem.lower() == split)
    if len(tables) == 1:
        return tables[0], "csv"
    if tables:
        raise DataError(f"{root}: several CSVs for split '{split}' ({', '.join(p.name for p in tables)}); give one as --data")
    raise DataError(f"{root}: no dataset_*.json and no *_{split}.csv (Karpathy JSON, NWPU JSON or GeoRSCLIP CSV)")


def _layout_of(path: Path) -> str:
    if path.suffix.lower() == ".csv":
        return "csv"
    if path.suffix.lower() != ".json":
        raise DataError(f"{path}: not a caption annotation file (.json or .csv)")
    return "nwpu" if "nwpu" in path.name.lower() else "karpathy"


def _text(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise DataError(f"{where}: caption {value!r} is not text")
    if not value.strip():
        raise DataError(f"{where}: empty caption")
    return value


def _split(value: object, where: str) -> str:
    split = SPLIT_ALIASES.get(str(value).lower(), str(value).lower())
    if split not in SPLITS:
        raise DataError(f"{where}: unknown split {value!r} (known: {', '.join(SPLITS)})")
    return split


def _read_json(path: Path, layout: str) -> list[tuple[CaptionedImage, str]]:
    from rsretrieve.io import read_json

    data = read_json(path, DataError, "a caption annotation file")
    out: list[tuple[CaptionedImage, str]] = []
    if layout == "karpathy":
        entries = data.get("images") if isinstance(data, dict) else None
        if not isinstance(entries, list):
            raise DataError(f"{path}: no 'images' list (Karpathy layout)")
        for i, entry in enumerate(entries):
            where = f"{path}: images[{i}]"
            if not isinstance(entry, dict) or "filename" not in entry or "split" not in entry:
                raise DataError(f"{where}: needs 'filename', 'split' and 'sentences'")
            where = f"{path}: images[{i}] ({entry['filename']})"
            sentences = entry.get("sentences")
            if not isinstance(sentences, list) or not sentences:
                raise DataError(f"{where}: empty caption list")
            captions = tuple(_text(s.get("raw") if isinstance(s, dict) else s, where) for s in sentences)
            out.append((CaptionedImage(str(entry["filename"]), captions), _split(entry["split"], where)))
        return out
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected an object of categories (NWPU layout)")
    for category, entries in data.items():
        for i, entry in enumerate(entries if isinstance(entries, list) else []):
            where = f"{path}: {category}[{i}]"
            if not isinstance(entry, dict) or "filename" not in entry or "split" not in entry:
                raise DataError(f"{where}: needs 'filename', 'split' and 'raw'")
            where = f"{path}: {category}[{i}] ({entry['filename']})"
            captions = tuple(_text(entry[f], where) for f in NWPU_FIELDS if entry.get(f) is not None)
            if not captions:
                raise DataError(f"{where}: empty caption list")
            out.append((CaptionedImage(str(entry["filename"]), captions, str(category)), _split(entry["split"], where)))
    return out


def _read_csv(path: Path) -> tuple[list[tuple[CaptionedImage, str]], str]:
    """Rows of ``filename,title`` grouped by filename (first appearance order)."""
    raw = path.read_bytes()
    for encoding in CSV_ENCODINGS:
        try:
            text = raw.decode(encoding).removeprefix("\ufeff")  # gb18030 has a byte-order mark of its own
            break
        except UnicodeDecodeError:
            continue
    else:
        raise DataError(f"{path}: neither UTF-8 nor gb18030 text")
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in ("filename", "title") if c not in (reader.fieldnames or [])]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)} (GeoRSCLIP CSV: filename,title)")
    grouped: dict[str, list[str]] = {}
    for line, row in enumerate(reader, start=2):
        name, title = (row.get("filename") or "").strip(), row.get("title")
        if not name or not title or not title.strip():
            raise DataError(f"{path}: line {line}: empty filename or title")
        grouped.setdefault(name, []).append(title)
    if not grouped:
        raise DataError(f"{path}: no rows")
    return [(CaptionedImage(name, tuple(titles)), "") for name, titles in grouped.items()], encoding.replace("-sig", "")


def _images_dir(folder: Path, given: Path | str | None) -> Path:
    if given is not None:
        if not Path(given).is_dir():
            raise DataError(f"--images {given} is not a folder")
        return Path(given)
    candidates = [folder / "images", *sorted(p for p in folder.glob("*_images") if p.is_dir())]
    found = [p for p in candidates if p.is_dir()]
    if not found:
        raise ConfigError(f"{folder}: no images/ or *_images/ folder beside the annotations; give --images DIR")
    return found[0]


def _to_uint8(array: np.ndarray, mode: str, path: Path) -> np.ndarray:
    """A 16-bit or float band as 8 bits. Unsigned integers are scaled by their maximum; floats
    already in [0, 1] by 255, others stretched from their minimum to their maximum. Nothing
    wraps around (values are clipped before the cast); a band without one finite value is an
    error, and non-finite pixels become 0 with a warning."""
    finite = np.isfinite(array)
    if not finite.any():
        raise DataError(f"{path}: a {mode} image without one finite pixel")
    if not finite.all():
        warn(f"{path}: {int((~finite).sum())} non-finite pixels of {array.size} read as 0")
    values = array[finite]
    low, high = float(values.min()), float(values.max())
    if mode == "F" and low >= 0.0 and high <= 1.0:
        scaled = array * 255.0
    elif low >= 0.0:
        scaled = array / (high or 1.0) * 255.0
    else:
        scaled = (array - low) / ((high - low) or 1.0) * 255.0
    return np.clip(np.rint(np.where(finite, scaled, 0.0)), 0, 255).astype(np.uint8)


def _as_rgb(image: Any, path: Path) -> Any:
    """RGB whatever the file holds: palette and grey images are converted, 16-bit TIFFs scaled."""
    from PIL import Image

    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        image = Image.fromarray(_to_uint8(np.asarray(image, np.float64), image.mode, path))
    if image.mode not in ("RGB", "L", "P", "RGBA", "LA", "CMYK", "YCbCr"):
        raise DataError(f"{path}: image mode {image.mode} is not an RGB-convertible image")
    return image.convert("RGB")
