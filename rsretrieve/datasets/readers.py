"""Planned batches read in parallel by worker processes, handed back in planned order.

h5py serialises every call under one lock per process, and gzip or Blosc decompression is CPU
work, so a corpus is read fast only by several processes. ``read_batches`` forks ``readers``
worker processes; each opens the dataset's files itself (through the dataset's own
``iter_batches``, so link confinement, NaN accounting and errors naming the file and key are
the reader's, unchanged) and reads every ``readers``-th planned batch. Pixels travel through
slots of one anonymous shared memory map made before the fork: no pixel array is pickled,
only keys, counts and locations. Worker ``w`` reads batches ``w, w + N, ...`` into its own ``depth``
slots, and the consumer takes batch ``i`` from worker ``i % N``, so batches come back in
planned order whatever N is; the embeddings are therefore the same bytes for every N.

This is a pool of our own rather than torch's DataLoader: the data path of an encoder that
needs no torch (the ``random`` baseline, used to measure reading) then imports no torch,
workers start by a plain fork (no re-import), and a dead worker is noticed at once through
its process sentinel and named with the batch it held.
"""

from __future__ import annotations

import mmap
import multiprocessing
import os
import queue
import signal
import threading
from collections.abc import Iterator, Sequence
from multiprocessing.connection import Connection, wait
from typing import Any, TypeVar

import numpy as np

from rsretrieve.datasets.base import Batch, PatchDataset, SampleInfo
from rsretrieve.errors import ConfigError, DataError

T = TypeVar("T")
PR_SET_PDEATHSIG = 1  # linux/prctl.h
MAX_DEFAULT_READERS = 8
DEPTH = 2  # slots per worker: one being filled while the consumer embeds the other


def default_readers() -> int:
    """The cores this process may run on, at most 8 (more seldom pays on one node's disks)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    return max(1, min(MAX_DEFAULT_READERS, cores))


def check_readers(readers: int | None) -> int:
    """``--readers`` as a count (None: the default), refused below 1."""
    if readers is None:
        return default_readers()
    if readers < 1:
        raise ConfigError(f"--readers must be at least 1, got {readers}")
    return readers


def read_batches(dataset: PatchDataset, batches: Sequence[Sequence[SampleInfo]], readers: int = 1) -> Iterator[Batch]:
    """The planned ``batches`` read by ``readers`` processes (1: in this process, one batch
    ahead in a thread). A batch's images are valid until the next batch is asked for."""
    if readers <= 1 or len(batches) <= 1:
        yield from prefetch(dataset.iter_batches(batches))
        return
    if "fork" not in multiprocessing.get_all_start_methods():
        raise ConfigError("--readers above 1 needs a platform with fork(); use --readers 1")
    yield from _Pool(dataset, batches, min(readers, len(batches)))


def prefetch(iterator: Iterator[T], depth: int = 2) -> Iterator[T]:
    """Run ``iterator`` in a reader thread, ``depth`` items ahead, so that reading the next
    batch overlaps work on this one where both release the GIL."""
    items: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def produce() -> None:
        try:
            for item in iterator:
                while not stop.is_set():
                    try:
                        items.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            items.put(done)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, re-raised there
            items.put(exc)

    reader = threading.Thread(target=produce, name="rsretrieve-reader", daemon=True)
    reader.start()
    try:
        while (item := items.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        reader.join(timeout=5)


def _batch_bytes(dataset: PatchDataset, batch: Sequence[SampleInfo], shapes: dict[str, tuple[int, ...]]) -> int:
    sensor = batch[0].sensor
    if sensor not in shapes:
        shapes[sensor] = tuple(dataset.image_shape(sensor))
    return len(batch) * int(np.prod(shapes[sensor])) * 4


def _die_with(parent: int) -> None:
    """Ask the kernel to SIGKILL this process when its parent dies. A SIGKILL or SIGTERM to the
    main process (what ``timeout``, slurm and docker send) runs no cleanup there, and a reader
    left behind, reparented to init, would read on for nothing. Linux only; elsewhere the
    readers end when they next find their pipe closed."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        return
    if os.getppid() != parent:  # the parent died before the request was made
        os._exit(1)


class _Pool:
    """Forked readers over slots of one shared map; iterating yields batches in plan order."""

    def __init__(self, dataset: PatchDataset, batches: Sequence[Sequence[SampleInfo]], workers: int) -> None:
        self.dataset = dataset
        self.batches = batches
        self.workers = workers
        shapes: dict[str, tuple[int, ...]] = {}
        self.slot_bytes = max(_batch_bytes(dataset, b, shapes) for b in batches)
        self.memory = mmap.mmap(-1, self.slot_bytes * workers * DEPTH)  # MAP_SHARED | MAP_ANONYMOUS

    def _slot(self, worker: int, slot: int, count: int) -> np.ndarray:
        offset = (worker * DEPTH + slot) * self.slot_bytes
        return np.frombuffer(self.memory, np.float32, count, offset)

    def __iter__(self) -> Iterator[Batch]:
        context = multiprocessing.get_context("fork")
        links: list[Connection] = []
        processes: list[Any] = []
        try:
            for worker in range(self.workers):
                mine, theirs = context.Pipe()
                process = context.Process(target=self._work, args=(worker, theirs, os.getpid()), daemon=True,
                                          name=f"rsretrieve-reader-{worker}")
                process.start()
                theirs.close()
                links.append(mine)
                processes.append(process)
            for index in range(len(self.batches)):
                worker = index % self.workers
                message = self._receive(links[worker], processes[worker], index)
                _, slot, shape, keys, nonfinite, counts, locations = message
                images = self._slot(worker, slot, int(np.prod(shape))).reshape(shape)
                yield Batch(self.batches[index][0].sensor, keys, images, nonfinite, counts, locations)
                if index + self.workers < len(self.batches):  # the worker has more: it may refill the slot
                    try:
                        links[worker].send(slot)
                    except BrokenPipeError:  # it has read all of its batches already and left
                        pass
        finally:
            for process in processes:
                if process.is_alive():
                    process.terminate()
            for process in processes:
                process.join(timeout=5)
            for link in links:
                link.close()

    def _receive(self, link: Connection, process: Any, index: int) -> tuple[Any, ...]:
        """The next message of a worker, or an error naming the batch when it died first."""
        ready = wait([link, process.sentinel])
        if link in ready:
            try:
                message = link.recv()
            except (EOFError, OSError):  # the worker died before or while sending
                message = None
            if message is not None and message[0] == "ok":
                return message
            if message is not None:
                _, kind, text = message
                raise (ConfigError if kind == "ConfigError" else DataError)(text)
        process.join(timeout=5)
        code = process.exitcode
        how = f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"
        if code == -signal.SIGKILL:
            how += " (out of memory, or killed)"
        first = self.batches[index][0].key
        raise DataError(
            f"reader process {process.pid} died ({how}) while reading batch {index} "
            f"({len(self.batches[index])} samples from key '{first}'); rerun to resume from the saved batches"
        )

    def _work(self, worker: int, link: Connection, parent: int) -> None:
        """A worker: read its batches with the dataset's own reader into its free slots, send
        keys and counts. Ctrl-C is the consumer's to handle; the worker ends with its parent."""
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # the CLI's handler is the main process's
        _die_with(parent)
        mine = list(self.batches[worker :: self.workers])
        free = list(range(DEPTH))
        index = worker
        slot = 0

        def allocate(shape: tuple[int, ...]) -> np.ndarray:
            nonlocal slot
            if not free:
                free.append(link.recv())
            slot = free.pop()
            return self._slot(worker, slot, int(np.prod(shape))).reshape(shape)

        try:
            for batch in self.dataset.iter_batches_into(mine, allocate):
                link.send(("ok", slot, batch.images.shape, list(batch.keys), batch.nonfinite, batch.nonfinite_per_sample,
                           batch.locations))
                index += self.workers
        except (BrokenPipeError, EOFError):  # pragma: no cover - the consumer has gone
            pass
        except (DataError, ConfigError) as exc:
            link.send(("error", type(exc).__name__, str(exc)))
        except Exception as exc:  # noqa: BLE001 - reported as one line by the consumer
            link.send(("error", "DataError", f"reading batch {index}: {type(exc).__name__}: {exc}"))
        finally:
            link.close()
