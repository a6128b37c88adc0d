"""Atomic writes: a crash or a bad input never leaves a half-written output behind."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


DISK_FAULTS = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded",
               errno.EIO: "input/output error", errno.EFBIG: "file too large (the file system's or ulimit -f's limit)"}
# The same faults where no errno survives: numpy's short write, faiss's C++ message.
_FAULT_TEXTS = {"No space left on device": DISK_FAULTS[errno.ENOSPC], "Disk quota exceeded": DISK_FAULTS[errno.EDQUOT],
                "Input/output error": DISK_FAULTS[errno.EIO], "File too large": DISK_FAULTS[errno.EFBIG]}
_SHORT_WRITE = re.compile(r"\d+ requested and \d+ written")
SHORT_WRITE = "a short write (a full disk, a quota or a file-size limit such as ulimit -f)"  # numpy names none


def disk_fault(exc: BaseException) -> str | None:
    """What went wrong with the machine in ``exc`` (a full disk, a quota, an I/O error), or
    None when it is some other error."""
    if isinstance(exc, OSError) and exc.errno in DISK_FAULTS:
        return DISK_FAULTS[exc.errno]
    if not isinstance(exc, (OSError, RuntimeError)):
        return None
    text = str(exc)
    found = next((reason for needle, reason in _FAULT_TEXTS.items() if needle in text), None)
    if found is None and _SHORT_WRITE.search(text):
        found = SHORT_WRITE
    return found


def human_bytes(count: float) -> str:
    """1234567 -> '1.2 MB' (decimal units, as df -H and disk vendors count)."""
    unit = "B"
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if count < 1000 or unit == "TB":
            break
        count /= 1000
    return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"


def free_bytes(path: Path) -> int | None:
    """Free bytes on the disk that would hold ``path`` (its nearest existing parent)."""
    probe = Path(path)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        return shutil.disk_usage(probe).free
    except OSError:
        return None


def disk_message(target: Path | None, reason: str, need: int | None = None, atomic: bool = True) -> str:
    """The one line of a disk fault (``target`` None: a write that did not say where; ``atomic``:
    the write went through a temporary file, so nothing half-written is left)."""
    free = free_bytes(target) if target is not None else None
    parts = [f"{human_bytes(free)} free there" if free is not None else None,
             f"this step needs about {human_bytes(need)}" if need else None]
    detail = "; ".join(p for p in parts if p)
    return (f"cannot write {target if target is not None else 'an output'}: {reason}" + (f" ({detail})" if detail else "")
            + ("; nothing half-written was kept: " if atomic else "; ")
            + "free some space (or raise the limit) and rerun the same command")


def check_space(target: Path, need: int, what: str) -> None:
    """Refuse a large write before it starts when the disk cannot hold it (``need`` bytes)."""
    from rsretrieve.errors import DiskError

    free = free_bytes(target)
    if free is not None and need > free:
        raise DiskError(f"cannot write {what} at {target}: it needs about {human_bytes(need)} and the disk there has "
                        f"{human_bytes(free)} free; free some space or choose another output")


@contextmanager
def disk_errors(target: Path, need: int | None = None) -> Iterator[None]:
    """Turn a full disk, a quota, an I/O error or a file-size limit met while writing ``target``
    into one DiskError naming it; other errors pass unchanged."""
    from rsretrieve.errors import DiskError

    try:
        yield
    except (OSError, RuntimeError) as exc:
        reason = disk_fault(exc)
        if reason is None:
            raise
        raise DiskError(disk_message(Path(target), reason, need)) from None


@contextmanager
def atomic_path(target: Path, need: int | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it onto ``target`` only on success.
    ``need`` (bytes, an estimate) is checked against the free space first."""
    target = Path(target)
    with disk_errors(target, need):
        target.parent.mkdir(parents=True, exist_ok=True)
        if need:
            check_space(target, need, target.name)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        os.close(fd)
        tmp_path = Path(tmp)
        try:
            os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; outputs follow the umask
            yield tmp_path
            os.replace(tmp_path, target)
        finally:
            tmp_path.unlink(missing_ok=True)


def write_text(target: Path, text: str) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(target: Path, data: Any) -> None:
    write_text(target, json.dumps(data, indent=2, sort_keys=False) + "\n")


MARKER = ".rsretrieve"  # in every folder atomic_dir makes, saying what it is: what --force may replace
INDEX = "an rsretrieve index"
# Folders written before the marker existed, told by the format field of a file they hold.
LEGACY = {INDEX: ("manifest.json", "rsretrieve-index"), "a model folder of rsretrieve train": ("config.json", "rsretrieve-model")}


def made_by_rsretrieve(path: Path, what: str | None = None) -> bool:
    """A folder rsretrieve wrote (as ``what``, when given): its marker says so, or, for folders
    of earlier versions, the format field of their manifest or config."""
    path = Path(path)
    if not path.is_dir() or path.is_symlink():
        return False
    try:
        marker = json.loads((path / MARKER).read_text(encoding="utf-8"))
        return isinstance(marker, dict) and marker.get("made_by") == "rsretrieve" and what in (None, marker.get("what"))
    except (OSError, ValueError):
        pass
    for kind, (name, form) in LEGACY.items():
        if what not in (None, kind):
            continue
        try:
            data = json.loads((path / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and data.get("format") == form:
            return True
    return False


def check_replaceable(target: Path, what: str) -> None:
    """``--force`` replaces only what rsretrieve made; anything else (a file, the user's folder,
    a dataset) is refused and left untouched."""
    from rsretrieve.errors import DataError

    target = Path(target)
    if target.is_symlink() or (target.exists() and not made_by_rsretrieve(target, what)):
        kind = ("a file" if target.is_file() else "a link" if target.is_symlink()
                else "something else rsretrieve made" if made_by_rsretrieve(target) else "a folder rsretrieve did not make")
        raise DataError(f"refusing to replace {target}: it is {kind}, not {what}; move it away or choose another output")


def clean_leftovers(target: Path) -> list[Path]:
    """Remove what an interrupted atomic_dir left beside ``target``: its temporary folders
    (``.NAME.XXXXXXXX.tmp``, named by mkdtemp) and a replaced ``.NAME.old`` folder that
    rsretrieve made. Returns what was removed."""
    target = Path(target)
    if not target.parent.is_dir():
        return []
    pattern = re.compile(rf"^\.{re.escape(target.name)}\.[a-z0-9_]{{8}}\.tmp$")
    removed = []
    for path in target.parent.iterdir():
        stale_tmp = pattern.match(path.name) and path.is_dir() and not path.is_symlink()
        stale_old = path.name == f".{target.name}.old" and made_by_rsretrieve(path)
        if stale_tmp or stale_old:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


@contextmanager
def atomic_dir(target: Path, *, replace: bool = False, what: str, need: int | None = None) -> Iterator[Path]:
    """Yield a temporary folder beside ``target``; move it into place only on success.

    With ``replace`` an existing ``target`` is swapped out after the new one is complete, and
    only if rsretrieve made it (``check_replaceable``). Leftovers of an interrupted earlier
    write are removed first; the new folder carries rsretrieve's marker. A full disk (checked
    first against ``need`` bytes when given) is one DiskError, and the temporary folder goes.
    """
    target = Path(target)
    if replace:
        check_replaceable(target, what)
    with disk_errors(target, need):
        target.parent.mkdir(parents=True, exist_ok=True)
        clean_leftovers(target)
        if need:
            check_space(target, need, what)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
        try:
            os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; outputs follow the umask
            (tmp / MARKER).write_text(json.dumps({"made_by": "rsretrieve", "what": what}) + "\n", encoding="utf-8")
            yield tmp
            if target.exists() and replace:
                old = target.with_name(f".{target.name}.old")
                shutil.rmtree(old, ignore_errors=True)
                os.replace(target, old)
                os.replace(tmp, target)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def keep_times_of_unchanged(new: Path, old: Path) -> None:
    """Give each file of the folder ``new`` whose bytes equal the same file in ``old`` the old
    one's times: a dataset regenerated unchanged (``sample --force`` on the same seed) keeps
    the fingerprint its indexes were built on (names, sizes and modification times)."""
    new, old = Path(new), Path(old)
    if not old.is_dir() or old.is_symlink():
        return
    for path in new.rglob("*"):
        before = old / path.relative_to(new)
        if not path.is_file() or path.is_symlink() or not before.is_file() or before.is_symlink():
            continue
        stat = before.stat()
        if stat.st_size == path.stat().st_size and _same_bytes(path, before):
            os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def _same_bytes(a: Path, b: Path, chunk: int = 1 << 20) -> bool:
    with open(a, "rb") as left, open(b, "rb") as right:
        while True:
            x, y = left.read(chunk), right.read(chunk)
            if x != y:
                return False
            if not x:
                return True


def name_part(text: str, fill: str = "-") -> str:
    """``text`` as one safe part of a file name: letters, digits, '.', '_' and '-' kept, any
    other character (a separator, a space) replaced by ``fill``."""
    return "".join(c if c.isalnum() or c in "._-" else fill for c in text)


def results_path(scored: Path) -> Path:
    """Where the scores of something go, for every command: beside it, named after it
    (``runs/x.trec`` -> ``runs/x.results.json``, index folder ``runs/idx`` -> ``runs/idx.results.json``)."""
    scored = Path(scored)
    stem = scored.name if scored.is_dir() else scored.name.removesuffix(scored.suffix)
    return scored.with_name(f"{stem}.results.json")


def check_writable(path: Path, folder: bool = False) -> None:
    """Fail before any work when the output ``path`` (a file, or with ``folder`` a folder)
    could not be written: it is of the other kind, or its nearest existing parent is not a
    writable folder."""
    from rsretrieve.errors import ConfigError

    path = Path(path)
    if path.is_dir() and not folder:
        raise ConfigError(f"cannot write {path}: it is a folder; give a file name")
    if folder and path.exists() and not path.is_dir():
        raise ConfigError(f"cannot write {path}: it is a file, and this output is a folder")
    probe = path.parent
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise ConfigError(f"cannot write {path}: {probe} is not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(f"cannot write {path}: {probe} is not writable")


def read_text(path: Path) -> str:
    """A UTF-8 text file, without a byte-order mark; other bytes are a DataError naming the
    file and offset."""
    from rsretrieve.errors import DataError

    try:
        return Path(path).read_text(encoding="utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte {exc.start})") from None


def read_json(path: Path, error: type[Exception], what: str, source: Path | None = None) -> Any:
    """Parse a JSON file (read from ``source`` when given, named ``path``); a missing file, or
    one that is not UTF-8 JSON, raises ``error`` naming it."""
    path = Path(path)
    source = path if source is None else Path(source)
    if not source.is_file():
        raise error(f"{path.parent} is not {what}: {path.name} not found")
    try:
        return json.loads(source.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise error(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except ValueError as exc:
        raise error(f"{path}: invalid JSON: {exc}") from None


def read_json_object(path: Path, error: type[Exception], what: str, fields: tuple[str, ...] = (),
                     source: Path | None = None) -> dict[str, Any]:
    """``read_json`` of a file that must hold an object with ``fields``: a list, a truncated
    file or a missing field is ``error`` naming the file and the field."""
    data = read_json(path, error, what, source)
    if not isinstance(data, dict):
        raise error(f"{path}: not {what} (a JSON {type(data).__name__} where an object belongs)")
    missing = [f for f in fields if f not in data]
    if missing:
        raise error(f"{path}: not {what} (field {', '.join(repr(f) for f in missing)} missing)")
    return data


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()



PIN_TRIES = 5


def read_pinned(folder: Path, read: Any) -> Any:
    """``read(view)`` over one state of ``folder``: ``view`` is a path to the folder opened once
    (``/proc/self/fd/N`` on Linux), so every file read through it comes from the same folder even
    while ``--force`` swaps a rebuilt one into its place. A read that failed while the folder was
    swapped (the old one removed under it) starts over on the new one. ``read`` names
    ``folder``, not ``view``, in its messages."""
    from rsretrieve.errors import RsRetrieveError

    folder = Path(folder)
    proc = Path("/proc/self/fd")
    if not proc.is_dir():  # pragma: no cover - not Linux: the folder is read by name
        return read(folder)
    for attempt in range(PIN_TRIES):
        try:
            fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            return read(folder)  # missing, or not a folder: the reader's own checks name it
        try:
            return read(proc / str(fd))
        except (OSError, RsRetrieveError):
            if attempt < PIN_TRIES - 1 and _swapped(fd, folder):
                continue
            raise
        finally:
            os.close(fd)
    raise AssertionError("unreachable")  # pragma: no cover - the last attempt returns or raises


def _swapped(fd: int, folder: Path) -> bool:
    """Whether ``folder`` names another folder than the open ``fd`` now (or none, mid-swap)."""
    try:
        return not os.path.samestat(os.fstat(fd), os.stat(folder))
    except OSError:
        return True
