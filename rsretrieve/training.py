"""Contrastive training of per-sensor image towers against a frozen text encoder (CLOSP-style).

Captions are built from each sample's labels with a random template and label order per
step, so training needs no text beyond the labels. S1 and S2 batches are drawn separately
(each sensor is aligned to the text space, not to the other sensor). The loss is the
symmetric CLIP InfoNCE with a learnable temperature; samples in a batch whose label sets
are equal count as positives of each other (they share a caption), not as negatives.

Output folder::

    best/    the model with the best validation nDCG@10 (load it with --model OUT/best)
    last/    the latest epoch + optimizer.safetensors + state.json, for --resume
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from rsretrieve.datasets import open_dataset
from rsretrieve.datasets.base import PatchDataset, SampleInfo
from rsretrieve.datasets.labels import CLASSES
from rsretrieve.encoders.text import TextEncoder, TextSpec, load_text_encoder
from rsretrieve.encoders.trained import WEIGHTS_FILE, DualEncoder, ModelConfig, TowerConfig, save_model
from rsretrieve.errors import ConfigError, DataError, first_line, warn
from rsretrieve.evaluate import score_run
from rsretrieve.io import check_writable, read_json_object, write_json
from rsretrieve.locks import output_lock

TEMPLATES: tuple[str, ...] = (
    "satellite image of {}",
    "a satellite photo showing {}",
    "remote sensing image with {}",
    "an aerial view of {}",
    "a Sentinel image of {}",
    "{}",
)
VALIDATION_QUERY = "satellite image of {}"
VALIDATION_METRICS = ("ndcg@10", "map@100")
FREEZE_CHOICES = ("none", "encoder")
MAX_LOGIT_SCALE = math.log(100.0)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything a run depends on; stored in the model's config.json for the record."""

    epochs: int = 40
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 1e-2
    warmup_steps: int = 10
    val_fraction: float = 0.2
    patience: int = 8
    seed: int = 0
    freeze: str = "none"  # "encoder": train adapters (heads included) and projections only
    train_blocks: int = 0  # also train the image tower's last N blocks (the rest frozen)
    tower: TowerConfig = TowerConfig()
    text: TextSpec = TextSpec()
    adapters: Mapping[str, str] = dataclasses.field(default_factory=dict)  # sensor -> adapter, over tower.adapter

    @classmethod
    def from_options(cls, backbone: str | None, width: int, old_adapter: str | None,
                     adapters: Mapping[str, str | None], **settings: Any) -> "TrainConfig":
        """``train``'s options: ``--backbone``, ``--s2-adapter``/``--s1-adapter`` as ``index`` names
        them, and the old ``--adapter`` (both towers) kept with a note."""
        given = {sensor: name for sensor, name in adapters.items() if name is not None}
        if old_adapter is not None:
            if given:
                raise ConfigError("--adapter is the old name of --s2-adapter/--s1-adapter; give only those")
            warn("train --adapter is now --s2-adapter/--s1-adapter (as in index); the old name will go")
        tower = TowerConfig.from_option(backbone or "spectral-cnn", old_adapter or "all-bands", width)
        return cls(tower=tower, adapters=given, **settings)

    def tower_of(self, sensor: str) -> TowerConfig:
        """The tower of one sensor: the shared settings with that sensor's adapter, as index takes them."""
        return dataclasses.replace(self.tower, adapter=self.adapters.get(sensor, self.tower.adapter))

    def __post_init__(self) -> None:
        if self.freeze not in FREEZE_CHOICES:
            raise ConfigError(f"--freeze must be one of {', '.join(FREEZE_CHOICES)}, got '{self.freeze}'")
        if not 0 < self.val_fraction < 1:
            raise ConfigError(f"--val-fraction must be between 0 and 1, got {self.val_fraction}")
        for name in ("epochs", "batch_size", "patience"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be at least 1")
        if self.train_blocks < 0:
            raise ConfigError(f"--train-blocks must be 0 or more, got {self.train_blocks}")
        if self.train_blocks and self.tower.backbone != "open_clip":
            raise ConfigError("--train-blocks trains the last blocks of an open_clip image tower; give --backbone open_clip:ARCH")


def set_trainable(model: DualEncoder, config: TrainConfig) -> None:
    """What trains: everything, or (``--freeze encoder``, implied by ``--train-blocks N``) the
    adapters, heads and projections, plus the tower's last N blocks."""
    if config.freeze != "encoder" and not config.train_blocks:
        return
    for tower in model.towers.values():
        tower.backbone.requires_grad_(False)
        if getattr(tower.adapter, "replaces_first_layer", False):
            tower.backbone.visual.conv1.requires_grad_(True)  # the head's widened first layer
        for block in getattr(tower.backbone, "last_blocks", lambda n: [])(config.train_blocks):
            block.requires_grad_(True)


def old_backbone_option(backbone: str | None, model: str | None, pretrained: str | None) -> str | None:
    """``--backbone`` from the old ``--backbone-model``/``--backbone-pretrained`` pair, with a note."""
    if model is None and pretrained is None:
        return backbone
    if model is None:
        raise ConfigError("--backbone-pretrained needs an architecture: give --backbone open_clip:ARCH:PRETRAINED")
    if backbone not in (None, "open_clip"):
        raise ConfigError(f"--backbone-model is the old form of --backbone open_clip:ARCH; give only --backbone (got {backbone})")
    joined = f"open_clip:{model}" + (f":{pretrained}" if pretrained else "")
    warn(f"--backbone-model/--backbone-pretrained are now --backbone {joined}; the old names will go")
    return joined


def caption(labels: Sequence[str], rng: np.random.Generator) -> str:
    """A caption from a label set: random template, random label order."""
    ordered = [labels[i] for i in rng.permutation(len(labels))]
    joined = ordered[0] if len(ordered) == 1 else ", ".join(ordered[:-1]) + " and " + ordered[-1]
    return TEMPLATES[int(rng.integers(len(TEMPLATES)))].format(joined)


class _TextCache:
    """The text encoder is frozen, so each distinct caption is embedded once."""

    def __init__(self, encoder: TextEncoder) -> None:
        self.encoder = encoder
        self.vectors: dict[str, np.ndarray] = {}

    def __call__(self, texts: Sequence[str]) -> torch.Tensor:
        missing = sorted({t for t in texts if t not in self.vectors})
        if missing:
            self.vectors.update(zip(missing, self.encoder.encode(missing)))
        return torch.from_numpy(np.stack([self.vectors[t] for t in texts]))


def contrastive_loss(images: torch.Tensor, texts: torch.Tensor, groups: Sequence[tuple[str, ...]], logit_scale: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE; rows with equal label sets are all positives of each other."""
    logits = logit_scale.exp() * images @ texts.T
    same = torch.tensor([[a == b for b in groups] for a in groups], dtype=torch.float32)
    targets = same / same.sum(1, keepdim=True)
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets.T)) / 2


def _split(samples: Sequence[SampleInfo], fraction: float, seed: int) -> tuple[list[SampleInfo], list[SampleInfo]]:
    labelled = [s for s in samples if s.labels]
    order = np.random.default_rng(seed).permutation(len(labelled))
    n_val = max(1, int(round(fraction * len(labelled))))
    val = [labelled[i] for i in sorted(order[:n_val])]
    fit = [labelled[i] for i in sorted(order[n_val:])]
    if not fit:
        raise DataError("too few labelled train samples to hold some out for validation")
    return fit, val


def _epoch_batches(samples: Sequence[SampleInfo], batch_size: int, rng: np.random.Generator) -> list[list[SampleInfo]]:
    """Shuffled single-sensor batches, sensors interleaved in random order."""
    batches: list[list[SampleInfo]] = []
    for sensor in sorted({s.sensor for s in samples}):
        group = [samples[i] for i in rng.permutation(len(samples)) if samples[i].sensor == sensor]
        batches.extend(group[i : i + batch_size] for i in range(0, len(group), batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]


@torch.no_grad()
def validate(model: DualEncoder, dataset: PatchDataset, samples: Sequence[SampleInfo], text: _TextCache) -> dict[str, float]:
    """Rank held-out samples for one query per class; qrels from their labels."""
    model.eval()
    keys, vectors = [], []
    for batch in dataset.iter_batches(dataset.plan_batches(64, samples)):
        vectors.append(model(torch.from_numpy(batch.images), batch.sensor))
        keys.extend(batch.keys)
    images = torch.cat(vectors)
    classes = [c for c in CLASSES if any(c in s.labels for s in samples)]
    queries = text([VALIDATION_QUERY.format(c) for c in classes])
    scores = (queries @ images.T).numpy()
    run = {c: dict(zip(keys, map(float, row))) for c, row in zip(classes, scores)}
    qrels = {c: {s.key: 1 for s in samples if c in s.labels} for c in classes}
    return score_run(qrels, run, VALIDATION_METRICS)["scores"]


def _optimizer_files(optimizer: torch.optim.Optimizer, state: Mapping[str, Any]) -> Callable[[Path], None]:
    """Optimizer tensors to safetensors, everything else to JSON (no pickle)."""
    from safetensors.torch import save_file

    def write(folder: Path) -> None:
        saved = optimizer.state_dict()
        tensors, scalars = {}, {}
        for pid, entry in saved["state"].items():
            for name, value in entry.items():
                if torch.is_tensor(value):
                    tensors[f"{pid}.{name}"] = value.contiguous()
                else:
                    scalars[f"{pid}.{name}"] = value
        save_file(tensors, str(folder / "optimizer.safetensors"))
        write_json(folder / "state.json", {**state, "param_groups": saved["param_groups"], "optimizer_scalars": scalars})

    return write


def _resume(folder: Path, model: DualEncoder, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """The saved state of ``folder`` (``last/``) loaded into model and optimizer; a damaged
    one is one error naming the folder."""
    from safetensors import SafetensorError

    try:
        return _load_last(folder, model, optimizer)
    except (OSError, ValueError, KeyError, TypeError, RuntimeError, SafetensorError) as exc:
        raise DataError(f"{folder}: the saved training state cannot be resumed ({type(exc).__name__}: {first_line(exc)}); "
                        "train again without --resume, or with --force") from None


def _load_last(folder: Path, model: DualEncoder, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    from safetensors.torch import load_file

    state = read_json_object(folder / "state.json", DataError, "a training state", ("optimizer_scalars", "record"))
    model.load_state_dict(load_file(str(folder / WEIGHTS_FILE)))
    entries: dict[int, dict[str, Any]] = {}
    for key, value in load_file(str(folder / "optimizer.safetensors")).items():
        pid, name = key.split(".", 1)
        entries.setdefault(int(pid), {})[name] = value
    for key, value in state["optimizer_scalars"].items():
        pid, name = key.split(".", 1)
        entries.setdefault(int(pid), {})[name] = value
    optimizer.load_state_dict({"state": entries, "param_groups": state["param_groups"]})
    return state


def train(
    data: Path | None,
    out: Path,
    config: TrainConfig = TrainConfig(),
    resume: bool = False,
    text_encoder: TextEncoder | None = None,
    on_step: Callable[[int, float], None] | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    dataset_format: str = "crisislandmark",
) -> dict[str, Any]:
    """Train on the ``train`` split of ``data`` (a dataset of ``dataset_format``; None: the
    embedded sample); write OUT/best and OUT/last; return the record."""
    from rsretrieve.datasets.fixtures.crisislandmark import ensure_default_sample

    out = Path(out)
    check_writable(out, folder=True)  # before the data is read or the text encoder loads
    with output_lock(out):
        if out.exists() and not resume and any(out.iterdir()):
            raise DataError(f"{out} already holds a training run; pass --resume to continue it or choose another --out")
        data = Path(data) if data is not None else ensure_default_sample()
        return _train(Path(data), out, config, resume, text_encoder, on_step, on_epoch, dataset_format)


def _train(
    data: Path, out: Path, config: TrainConfig, resume: bool, text_encoder: TextEncoder | None,
    on_step: Callable[[int, float], None] | None, on_epoch: Callable[[dict[str, Any]], None] | None, dataset_format: str,
) -> dict[str, Any]:
    dataset = open_dataset(dataset_format, Path(data), split="train")
    fit, val = _split(dataset.samples, config.val_fraction, config.seed)
    text_encoder = text_encoder or load_text_encoder(config.text)
    text = _TextCache(text_encoder)
    sensors = sorted({s.sensor for s in dataset.samples})
    unused = sorted(set(config.adapters) - set(sensors))
    if unused:
        raise ConfigError(f"--{unused[0]}-adapter: the train split of {data} has no {unused[0]} samples, so no tower would use it")
    torch.manual_seed(config.seed)  # right before the weights are drawn: reproducible init
    model = DualEncoder(ModelConfig(config.text, text_encoder.dim, {s: config.tower_of(s) for s in sensors}))
    set_trainable(model, config)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    record: dict[str, Any] = {
        "train_config": _jsonable(config), "dataset": str(Path(data).resolve()),
        "dataset_fingerprint": dataset.fingerprint(), "n_fit": len(fit), "n_val": len(val),
        "text_encoder": text_encoder.identity, "history": [], "best_epoch": None, "best_ndcg@10": -1.0,
        "step": 0, "bad_epochs": 0,
    }
    if resume and (out / "last" / "state.json").is_file():
        record.update(_resume(out / "last", model, optimizer)["record"])
    else:
        record["history"].append({"epoch": 0, **validate(model, dataset, val, text)})
    start_epoch = len(record["history"])
    for epoch in range(start_epoch, config.epochs + 1):
        if record["bad_epochs"] >= config.patience:
            break
        started = time.perf_counter()
        losses = _train_epoch(model, optimizer, dataset, fit, text, config, epoch, record, on_step)
        scores = validate(model, dataset, val, text)
        entry = {"epoch": epoch, "loss": float(np.mean(losses)), **scores, "seconds": round(time.perf_counter() - started, 2)}
        record["history"].append(entry)
        if scores["ndcg@10"] > record["best_ndcg@10"]:
            record.update({"best_epoch": epoch, "best_ndcg@10": scores["ndcg@10"], "bad_epochs": 0})
            save_model(model, out / "best", record)
        else:
            record["bad_epochs"] += 1
        save_model(model, out / "last", record, _optimizer_files(optimizer, {"record": record}))
        if on_epoch:
            on_epoch(entry)
    return record


def _train_epoch(
    model: DualEncoder,
    optimizer: torch.optim.Optimizer,
    dataset: PatchDataset,
    fit: Sequence[SampleInfo],
    text: _TextCache,
    config: TrainConfig,
    epoch: int,
    record: dict[str, Any],
    on_step: Callable[[int, float], None] | None,
) -> list[float]:
    model.train()
    rng = np.random.default_rng([config.seed, epoch])
    labels = {s.key: s.labels for s in fit}
    losses = []
    for batch in dataset.iter_batches(_epoch_batches(fit, config.batch_size, rng)):
        groups = [tuple(sorted(labels[k])) for k in batch.keys]
        captions = text([caption(labels[k], rng) for k in batch.keys])
        warmup = min(1.0, (record["step"] + 1) / config.warmup_steps)
        for group in optimizer.param_groups:
            group["lr"] = config.lr * warmup
        loss = contrastive_loss(model(torch.from_numpy(batch.images), batch.sensor), captions, groups, model.logit_scale)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, MAX_LOGIT_SCALE)
        record["step"] += 1
        losses.append(loss.item())
        if on_step:
            on_step(len(batch.keys), losses[-1])
    return losses


def _jsonable(config: TrainConfig) -> dict[str, Any]:
    return json.loads(json.dumps(dataclasses.asdict(config)))

