"""The configuration's schema: a tree of dataclasses (:class:`Config` at the root) and its range checks.

Names that registries define (losses, weighting schemes, backbones, compressors) are
checked by :func:`lossensemble.models.check_components`, not here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from lossensemble.errors import UserError

__all__ = [
    "ConfigError",
    "DataConfig",
    "ModelConfig",
    "LossConfig",
    "WeightingConfig",
    "LearningRates",
    "LoggerConfig",
    "TrainConfig",
    "EvalConfig",
    "CompressionConfig",
    "Config",
]


#: Largest seed torch's generators accept.
MAX_SEED = 2**63 - 1
MAX_EMBEDDING_DIM = 65536
MAX_IMAGE_SIZE = 4096
MAX_BATCH_SIZE = 1_000_000
MAX_K = 2**31 - 1  # Recall@K beyond the gallery size means "among all items"


class ConfigError(UserError):
    """A configuration that cannot be used; the message names the offending key."""


@dataclass
class DataConfig:
    """Which dataset to train and evaluate on, and how batches are drawn."""

    name: str = "glyphs"
    root: str | None = None
    image_size: int = 64
    # Dataset-specific keyword arguments passed to ``build_dataset`` (e.g. glyph counts).
    options: dict[str, Any] = field(default_factory=dict)
    # The split trained on: "train", or another training split of the dataset (glyphs: "pretrain",
    # classes disjoint from train and test, for pretraining a backbone; see configs/glyphs-pretrain.yaml).
    train_split: str = "train"
    # Fraction of the training classes held out as a validation split (0 = none).
    val_fraction: float = 0.0
    # Training augmentation: auto (the dataset kind's own), photo, glyph, none, or
    # {name: ..., options: {...}} (e.g. {name: photo, options: {flip: false, crop_scale: [0.5, 1]}}).
    augment: Any = "auto"
    batch_size: int = 64
    m_per_class: int = 4
    num_workers: int = 0


@dataclass
class ModelConfig:
    """The shared backbone and the embedding heads (one per loss)."""

    backbone: str = "small_cnn"
    pretrained: bool = False
    # Where pretrained weights are looked for (safetensors / torch state dict); None = default cache.
    weights: str | None = None
    embedding_dim: int = 64
    freeze_bn: bool = False
    # Backbone fixed (no gradients, eval mode): train heads, loss weights and compressor only. With
    # data.augment=none its features are computed once per image and cached (feature_cache).
    freeze_backbone: bool = False
    feature_cache: bool = True
    # Partial sharing: the backbone's last `branch_at` stages copied once per head that owns parameters
    # (a loss sharing another's head shares its branch); 0 = one shared backbone. small_cnn has 3
    # stages after its stem, the torchvision ResNets 4.
    branch_at: int = 0


@dataclass
class LossConfig:
    """One baseline learner: a loss by registry name (or ``pml:<ClassName>``) with its own options.

    ``miner``: an optional pytorch-metric-learning miner for pml-backed losses,
    ``{name: "pml:<Miner>", options: {...}}``. ``head``: the name of another loss of the
    list whose embedding head this loss shares (default: a head of its own).
    """

    name: str = "triplet"
    options: dict[str, Any] = field(default_factory=dict)
    miner: dict[str, Any] | str | None = None
    head: str | None = None


def _default_losses() -> list[LossConfig]:
    return [
        LossConfig("classification"),
        LossConfig("triplet"),
        LossConfig("binomial"),
        LossConfig("proxy_nca"),
    ]


@dataclass
class WeightingConfig:
    """How the per-loss terms are combined (see docs/method.md)."""

    scheme: str = "uncertainty"  # a registered scheme: equal | learned | fixed | uncertainty | gradnorm | ...
    scale: str = "none"  # none | running_mean
    # Keyword options of the scheme (e.g. gradnorm's alpha), checked against its constructor.
    options: dict[str, Any] = field(default_factory=dict)
    prior: list[float] | None = None  # learned: initial weights (normalised to sum 1)
    weights: list[float] | None = None  # fixed: the weights
    penalty: float = 1.0e4  # learned: P in P * (sum w - 1)^2
    diversity: float = 0.0  # lambda of the head-diversity regulariser (paper's WEDL: 0.01)
    diversity_margin: float = 2.0


@dataclass
class LearningRates:
    """Per-parameter-group learning rates (the paper's recipe: docs/method.md)."""

    backbone: float = 1.0e-3
    heads: float = 1.0e-3
    loss_params: float = 1.0e-2
    weights: float = 1.0e-4
    compressor: float = 1.0e-3


@dataclass
class LoggerConfig:
    """One experiment tracker of ``train.loggers``: a registered logger by name with its options."""

    name: str = "csv"
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainConfig:
    """Optimisation budget and schedule."""

    epochs: int = 10
    # Steps per epoch; None = one pass over the training set's batches.
    steps_per_epoch: int | None = None
    optimizer: str = "adam"  # adam | adamw | sgd
    lr: LearningRates = field(default_factory=LearningRates)
    weight_decay: float = 1.0e-4
    eps: float = 1.0e-8
    momentum: float = 0.9
    lr_decay: float = 1.0  # exponential decay per epoch (paper: 0.94)
    grad_clip: float | None = 10.0
    amp: bool = True  # mixed precision, only on CUDA
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    threads: int | None = None  # torch intra-op threads on CPU; None = leave as is
    # Speed-ups (BENCHMARKS.md "Compiled step"): the backbone in channels_last memory format (auto: where
    # measured faster, small_cnn), and compiled with torch.compile (off: tens of seconds of compilation).
    channels_last: Any = "auto"
    compile: bool = False
    eval_every: int = 1
    checkpoint_every: int = 1
    progress: bool = True
    # Experiment trackers (lossensemble.training.loggers): csv (history.csv), tensorboard, mlflow, or a
    # registered one; an entry is a name or {name: ..., options: {...}}.
    loggers: list[Any] = field(default_factory=lambda: ["csv"])

    def logger_entries(self) -> list[LoggerConfig]:
        """``loggers`` as :class:`LoggerConfig` entries (what the trainer builds); a bad entry is a ConfigError."""
        out = []
        for i, x in enumerate(self.loggers):
            if isinstance(x, LoggerConfig):
                out.append(x)
                continue
            x = {"name": x} if isinstance(x, str) else x
            _check(isinstance(x, dict), f"train.loggers.{i}", f"expected a name or {{name: ..., options: {{...}}}}, "
                                                              f"got {x!r}")
            unknown = sorted(set(map(str, x)) - {"name", "options"})
            _check(not unknown, f"train.loggers.{i}", f"unknown key {unknown[0]!r} (known keys: name, options)"
                   if unknown else "")
            _check(isinstance(x.get("name"), str) and bool(x.get("name")), f"train.loggers.{i}.name",
                   f"expected a logger name, got {x.get('name')!r}")
            _check(isinstance(x.get("options", {}), dict), f"train.loggers.{i}.options",
                   f"expected a mapping, got {x.get('options')!r}")
            out.append(LoggerConfig(x["name"], dict(x.get("options", {}))))
        if "csv" not in [entry.name for entry in out]:  # history.csv is always written: compare's choices on the
            out.insert(0, LoggerConfig("csv", {}))  # validation classes and the learning curves read it
        return out


@dataclass
class EvalConfig:
    """Evaluation on the unseen test classes."""

    k: list[int] = field(default_factory=lambda: [1, 2, 4, 8])
    distance: str = "cosine"  # cosine | euclidean
    batch_size: int = 256
    nmi: bool = True
    max_items: int | None = None  # subsample the test split (for quick runs); None = all


@dataclass
class CompressionConfig:
    """Distance-based compression of the ensemble embedding (docs/method.md)."""

    enabled: bool = False
    variant: str = "mlp"  # mlp (paper) | direct (compact head on backbone features); see models/compressor.py
    dim: int | None = None  # None = one head's embedding_dim
    objective: str = "frobenius"  # frobenius (paper) | softmax; see losses/distance_matching.py
    epochs: int = 5  # post-hoc training epochs


@dataclass
class Config:
    """A whole run: data, model, losses, weighting, training, evaluation, compression."""

    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    losses: list[LossConfig] = field(default_factory=_default_losses)
    weighting: WeightingConfig = field(default_factory=WeightingConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    compression: CompressionConfig = field(default_factory=CompressionConfig)

    def eval_options(self) -> dict[str, Any]:
        """Keyword arguments of :func:`lossensemble.evaluation.evaluate_model` for this run."""
        e = self.eval
        return {"k": tuple(e.k), "distance": e.distance, "nmi": e.nmi, "batch_size": e.batch_size,
                "num_workers": self.data.num_workers, "max_items": e.max_items, "seed": self.seed}

    def validate(self) -> "Config":
        """Check value ranges that types alone cannot express; returns self."""
        _check(0 <= self.seed <= MAX_SEED, "seed", f"must be in [0, {MAX_SEED}] (2**63-1, what torch accepts)")
        d = self.data
        _check(8 <= d.image_size <= MAX_IMAGE_SIZE, "data.image_size", f"must be in [8, {MAX_IMAGE_SIZE}]")
        _check(2 <= d.batch_size <= MAX_BATCH_SIZE, "data.batch_size", f"must be in [2, {MAX_BATCH_SIZE:_}]")
        _check(d.m_per_class >= 2, "data.m_per_class", "must be >= 2 (pairs need two images of a class)")
        _check(d.train_split == "train" or d.val_fraction == 0, "data.val_fraction",
               "validation classes are held out of the 'train' split: set 0 when data.train_split is another")
        _check(d.train_split in ("train", "pretrain"), "data.train_split", "must be 'train' or 'pretrain'")
        _check(d.batch_size % d.m_per_class == 0, "data.batch_size",
               f"must be a multiple of data.m_per_class ({d.m_per_class})")
        _check(d.num_workers >= 0, "data.num_workers", "must be >= 0")
        _check(0.0 <= d.val_fraction < 1.0, "data.val_fraction", "must be in [0, 1)")
        _check(1 <= self.model.embedding_dim <= MAX_EMBEDDING_DIM, "model.embedding_dim",
               f"must be in [1, {MAX_EMBEDDING_DIM}]")
        _check(self.model.branch_at >= 0, "model.branch_at", "must be >= 0 (0 = one shared backbone)")
        _check(len(self.losses) >= 1, "losses", "must name at least one loss")
        names = [loss.name for loss in self.losses]
        _check(len(set(names)) == len(names), "losses", f"each loss may appear once, got {names}")
        for i, loss in enumerate(self.losses):
            owner = next((o for o in self.losses if o.name == loss.head and o is not loss), None)
            _check(loss.head is None or (owner is not None and owner.head is None), f"losses.{i}.head",
                   f"must name another loss of the list that has its own head, got {loss.head!r}")
        w = self.weighting
        _check(w.scale in ("none", "running_mean"), "weighting.scale",
               f"must be 'none' or 'running_mean'; got {w.scale!r}")
        m = len(self.losses)
        if w.scheme == "fixed":
            _check(w.weights is not None and len(w.weights) == m, "weighting.weights",
                   f"scheme 'fixed' needs one weight per loss ({m})")
            _check(all(x >= 0 for x in w.weights or []), "weighting.weights", "must be >= 0")
        if w.prior is not None:
            _check(len(w.prior) == m and all(x > 0 for x in w.prior), "weighting.prior",
                   f"needs {m} positive numbers, one per loss")
        _check(w.penalty >= 0, "weighting.penalty", "must be >= 0")
        _check(w.diversity >= 0, "weighting.diversity", "must be >= 0")
        t = self.train
        _check(t.epochs >= 1, "train.epochs", "must be >= 1")
        _check(t.steps_per_epoch is None or t.steps_per_epoch >= 1, "train.steps_per_epoch", "must be >= 1")
        _check(t.optimizer in ("adam", "adamw", "sgd"), "train.optimizer",
               f"must be adam, adamw or sgd; got {t.optimizer!r}")
        for name in ("backbone", "heads", "loss_params", "weights", "compressor"):
            lr = getattr(t.lr, name)
            _check(math.isfinite(lr) and lr >= 0, f"train.lr.{name}", f"must be a finite number >= 0, got {lr}")
        _check(0 < t.lr_decay <= 1, "train.lr_decay", "must be in (0, 1]")
        _check(t.grad_clip is None or (math.isfinite(t.grad_clip) and t.grad_clip > 0), "train.grad_clip",
               "must be a finite number > 0 or null")
        _check(math.isfinite(t.weight_decay) and t.weight_decay >= 0, "train.weight_decay",
               "must be a finite number >= 0")
        _check(math.isfinite(t.eps) and t.eps > 0, "train.eps", "must be a finite number > 0")
        _check(0 <= t.momentum < 1, "train.momentum", "must be in [0, 1)")
        _check(t.eval_every >= 1, "train.eval_every", "must be >= 1")
        _check(t.checkpoint_every >= 1, "train.checkpoint_every", "must be >= 1")
        logger_names = [x.name for x in t.logger_entries()]
        _check(len(set(logger_names)) == len(logger_names), "train.loggers",
               f"each logger may appear once, got {logger_names}")
        _check(t.threads is None or t.threads >= 1, "train.threads", "must be >= 1")
        _check(t.channels_last in (True, False, "auto"), "train.channels_last", "must be true, false or auto")
        e = self.eval
        _check(len(e.k) >= 1 and all(1 <= k <= MAX_K for k in e.k), "eval.k", f"needs integers in [1, {MAX_K:_}]")
        _check(e.distance in ("cosine", "euclidean"), "eval.distance", "must be 'cosine' or 'euclidean'")
        _check(e.batch_size >= 1, "eval.batch_size", "must be >= 1")
        _check(e.max_items is None or e.max_items >= 2, "eval.max_items", "must be >= 2 or null (all items)")
        c = self.compression
        _check(c.dim is None or c.dim >= 1, "compression.dim", "must be >= 1")
        return self


def _check(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"{key}: {message}")
