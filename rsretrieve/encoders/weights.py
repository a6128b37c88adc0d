"""Weights files as published: read without unpickling code, unwrap training checkpoints,
report missing and unexpected keys by name, and hash what was loaded."""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import warnings
import zipfile
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

from rsretrieve.errors import ModelError, first_line

WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".ckpt")
# Wrappers of a state dict in training checkpoints: Lightning and open_clip's trainer.
WRAPPER_KEYS = ("state_dict", "model", "module")
# Prefixes that training adds to every key: Lightning's "model.", DDP's "module.".
KEY_PREFIXES = ("model.", "module.")


class _SkipRandomInit(TorchFunctionMode):
    """Random initialisers leave their tensors as allocated; every other torch call (the
    ``fill_`` and ``arange`` that compute non-persistent buffers such as causal masks) runs."""

    SKIPPED = frozenset({torch.Tensor.uniform_, torch.Tensor.normal_, torch.nn.init.uniform_,
                         torch.nn.init.normal_, torch.nn.init.kaiming_uniform_})

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        if func in self.SKIPPED:
            return args[0] if args else (kwargs or {})["tensor"]
        return func(*args, **(kwargs or {}))


@contextmanager
def built_for_loading() -> Iterator[None]:
    """Build a model here only to load a checkpoint into it with every key checked: its random
    initialisation, seconds for a ViT-B or two ResNet-50 towers, would all be overwritten.
    A torch function mode, so it holds for this thread only (a dask worker's other threads
    build their random-init models as before)."""
    with _SkipRandomInit():
        yield


def weights_digest(module: torch.nn.Module) -> str:
    """sha256 over the state dict, so a manifest can tell whether weights changed."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().data)  # the buffer itself, not a copy of it
    return digest.hexdigest()


def find_weights_file(path: Path) -> Path:
    """``path`` itself, or the one weights file inside a downloaded folder (a hub snapshot)."""
    path = Path(path).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in WEIGHT_SUFFIXES)
        if len(found) == 1:
            return found[0]
        names = ", ".join(p.name for p in found) or "none"
        raise ModelError(f"{path}: expected one weights file ({', '.join(WEIGHT_SUFFIXES)}) in the folder, found {names}")
    raise ModelError(f"weights file {path} not found")


@contextmanager
def unpacked(path: Path) -> Iterator[Path]:
    """A loadable weights file: ``path`` itself, or the one weights file inside a release zip
    (SkyCLIP ships its open_clip checkpoint zipped), extracted to a temporary folder. torch's
    own files are zip archives too; they are recognised by their ``data.pkl`` member."""
    path = Path(path)
    if not zipfile.is_zipfile(path):
        yield path
        return
    with zipfile.ZipFile(path) as archive:
        names = [n for n in archive.namelist() if not n.endswith("/")]
        if any(n.endswith("data.pkl") for n in names):
            yield path  # a torch.save file
            return
        inner = [n for n in names if n.endswith(WEIGHT_SUFFIXES) and not Path(n).name.startswith(".")]
        if len(inner) != 1:
            raise ModelError(f"{path}: a zip archive with {len(inner)} weights files ({', '.join(inner[:5]) or 'none'}); "
                             "unpack it and pass the one to use")
        with tempfile.TemporaryDirectory(prefix="rsretrieve-weights-") as tmp:
            target = Path(tmp) / Path(inner[0]).name
            with archive.open(inner[0]) as source, open(target, "wb") as sink:
                shutil.copyfileobj(source, sink, 1 << 20)
            yield target


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from ``.safetensors``, or from ``.pt/.pth/.bin/.ckpt`` loaded with
    ``weights_only=True`` (a plain state dict, a Lightning checkpoint's ``state_dict`` or an
    open_clip training checkpoint, ``model.``/``module.`` prefixes removed)."""
    return read_checkpoint(path)[0]


def is_safetensors(path: Path) -> bool:
    """Whether the file's bytes are safetensors (an 8-byte little-endian header length, then a
    JSON object of that length), whatever its name says: a safetensors file saved as ``w.bin``
    must not go to torch's unpickler, nor a torch file named ``.safetensors`` to safetensors."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(9)
            size = Path(path).stat().st_size
    except OSError:
        return False
    if len(head) < 9:
        return False
    length = int.from_bytes(head[:8], "little")
    return 2 <= length <= size - 8 and head[8:9] == b"{"


def read_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, object]]:
    """``read_state_dict`` plus the checkpoint's ``hyper_parameters`` (Lightning), or {}."""
    path = find_weights_file(path)
    if is_safetensors(path) or (path.suffix == ".safetensors" and not zipfile.is_zipfile(path)):
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return dict(load_file(str(path))), {}
        except (SafetensorError, OSError) as exc:
            raise ModelError(f"{path}: not a readable safetensors file ({exc})") from None
    try:
        with unpacked(path) as file, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's notes on pickle protocols: not the user's concern
            data = torch.load(file, map_location="cpu", weights_only=True)
    except ModelError:
        raise
    except Exception as exc:  # noqa: BLE001 - unpickling refusals and damaged files come as many types
        first = first_line(exc, 200)
        raise ModelError(
            f"{path}: cannot be read as weights with weights_only=True ({first}); rsretrieve never "
            "unpickles code. Convert it to a plain state dict or safetensors on a trusted machine"
        ) from None
    extras = data.get("hyper_parameters") if isinstance(data, Mapping) else None
    return unwrap(data, path), dict(extras) if isinstance(extras, Mapping) else {}


def unwrap(data: object, path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a (possibly wrapped) state dict, with training prefixes removed."""
    for _ in range(3):
        if isinstance(data, Mapping) and not _is_state_dict(data):
            inner = next((data[k] for k in WRAPPER_KEYS if isinstance(data.get(k), Mapping)), None)
            if inner is None:
                break
            data = inner
    if not isinstance(data, Mapping) or not _is_state_dict(data):
        raise ModelError(f"{path}: no state dict found (looked at the top level and under {', '.join(WRAPPER_KEYS)})")
    tensors = {str(k): v for k, v in data.items() if torch.is_tensor(v)}
    for prefix in KEY_PREFIXES:
        if tensors and all(k.startswith(prefix) for k in tensors):
            tensors = {k[len(prefix):]: v for k, v in tensors.items()}
        elif sum(k.startswith(prefix) for k in tensors) * 2 > len(tensors):
            bare = sorted(k for k in tensors if not k.startswith(prefix))
            raise ModelError(f"{path}: {len(tensors) - len(bare)} keys start with '{prefix}' but {len(bare)} do not "
                             f"({', '.join(bare[:5])}), so the prefix cannot be removed: a checkpoint mixing "
                             "prefixed and bare keys (re-save it with one naming)")
    return tensors


def _is_state_dict(data: Mapping) -> bool:
    return bool(data) and all(torch.is_tensor(v) for v in data.values() if not isinstance(v, (int, float, str)))


def check_keys(path: Path, expected: Iterable[str], got: Iterable[str], ignore: Iterable[str] = ()) -> None:
    """Missing or unexpected keys are an error that names them (the first few of each)."""
    expected, got, ignore = set(expected), set(got), tuple(ignore)
    missing = sorted(expected - got)
    unexpected = sorted(k for k in got - expected if not k.endswith(ignore))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing keys {', '.join(missing[:5])}" + (f" and {len(missing) - 5} more" if len(missing) > 5 else ""))
        if unexpected:
            parts.append(f"unexpected keys {', '.join(unexpected[:5])}" + (f" and {len(unexpected) - 5} more" if len(unexpected) > 5 else ""))
        raise ModelError(f"{path}: {'; '.join(parts)}")
