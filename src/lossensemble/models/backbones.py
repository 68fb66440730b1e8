"""Backbone registry: feature extractors shared by all embedding heads.

A backbone maps an image batch ``(B, 3, H, W)`` to pooled features ``(B, F)``.
torchvision provides the real networks (ResNets and any other classification model
it ships); timm models are available as ``timm:<name>`` when timm is installed.
``small_cnn`` is our own light network, sized to train in minutes on a CPU on the
embedded glyph data.

Each backbone carries the :class:`~lossensemble.preprocess.Normalisation` its input is
prepared with (``Backbone.normalisation``): a timm model's own data config (mean/std,
interpolation, crop_pct, from ``timm.data.resolve_data_config``); ImageNet statistics and
bilinear resizing for torchvision and ``small_cnn``. The input size is always the config's
``data.image_size``, never the model's default (a timm model whose default differs is warned
about once).

Pretrained weights are never downloaded silently: they are read from
``model.weights`` (a safetensors file or a torch state dict loaded with
``weights_only=True``) or from torch's hub cache when torchvision's file is already
there. When ``pretrained`` is asked for and no weights can be found, a
:class:`UserError` says where they were looked for.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from lossensemble.errors import UserError
from lossensemble.preprocess import IMAGENET, Normalisation
from lossensemble.registry import Registry

__all__ = [
    "Backbone",
    "BACKBONES",
    "register_backbone",
    "available_backbones",
    "build_backbone",
    "load_state_dict_file",
    "freeze_batchnorm",
    "timm_normalisation",
    "warn_input_size",
    "STAGE_COUNTS",
    "split_stages",
]

log = logging.getLogger(__name__)


class Backbone(nn.Module):
    """A feature extractor with a known output width ``feature_dim``.

    ``normalisation``: how its input images are normalised and resized (training and
    evaluation transforms, exported models); ImageNet's unless the network says otherwise.
    """

    def __init__(self, body: nn.Module, feature_dim: int, pool: bool = True,
                 normalisation: Normalisation = IMAGENET) -> None:
        super().__init__()
        self.body = body
        self.pool = nn.AdaptiveAvgPool2d(1) if pool else nn.Identity()
        self.feature_dim = feature_dim
        self.normalisation = normalisation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.pool(self.body(x)), 1)


@dataclass(frozen=True)
class BackboneSpec:
    """How to build one registered backbone."""

    factory: Callable[[bool, str | None], Backbone]
    description: str


BACKBONES: Registry[BackboneSpec] = Registry("backbone", key="model.backbone")
"""Registry of backbone factories by name (filled by :func:`register_backbone`)."""


def register_backbone(name: str, description: str = ""):
    """Decorator adding a ``factory(pretrained, weights) -> Backbone`` to the registry."""

    def wrap(factory: Callable[[bool, str | None], Backbone]):
        BACKBONES.register(name, BackboneSpec(factory, description))
        return factory

    return wrap


def available_backbones() -> list[str]:
    return sorted(BACKBONES)


def _conv_block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


@register_backbone("small_cnn", "4-layer CNN (ours), 256 features; trains in minutes on CPU")
def _small_cnn(pretrained: bool, weights: str | None) -> Backbone:
    body = nn.Sequential(
        _conv_block(3, 32),
        nn.MaxPool2d(2),
        _conv_block(32, 64),
        nn.MaxPool2d(2),
        _conv_block(64, 128),
        nn.MaxPool2d(2),
        _conv_block(128, 256),
    )
    net = Backbone(body, 256)
    if pretrained or weights:
        if not weights:
            raise UserError(
                "model.pretrained: small_cnn has no published weights; give a file in "
                "model.weights (e.g. from a run pretrained on the glyphs 'pretrain' split)"
            )
        _load_into(net, weights, name="small_cnn")
    return net


def _torchvision_factory(arch: str) -> Callable[[bool, str | None], Backbone]:
    def factory(pretrained: bool, weights: str | None) -> Backbone:
        import torchvision

        model = torchvision.models.get_model(arch, weights=None)
        # Replace the classifier with the identity: the pooled features are the output.
        if hasattr(model, "fc") and isinstance(model.fc, nn.Linear):
            feature_dim = model.fc.in_features
            model.fc = nn.Identity()
        elif hasattr(model, "classifier"):
            last = [m for m in model.classifier.modules() if isinstance(m, nn.Linear)]
            if not last:
                raise UserError(f"model.backbone: cannot find the classifier of torchvision '{arch}'")
            feature_dim = last[0].in_features
            model.classifier = nn.Identity()
        elif hasattr(model, "heads"):
            feature_dim = model.heads[-1].in_features
            model.heads = nn.Identity()
        else:
            raise UserError(f"model.backbone: torchvision '{arch}' is not a supported layout")
        net = Backbone(model, feature_dim, pool=False)
        if weights:
            _load_into(net.body, weights, ignore_prefixes=("fc.", "classifier.", "heads."), name=arch)
        elif pretrained:
            _load_into(net.body, str(_torchvision_cached_weights(arch)), ignore_prefixes=("fc.", "classifier.", "heads."))
        return net

    return factory


def _torchvision_cached_weights(arch: str) -> Path:
    """Path of torchvision's default weights for ``arch`` if already in the hub cache."""
    import torchvision

    try:
        enum = torchvision.models.get_model_weights(arch)
    except (ValueError, KeyError):
        raise UserError(f"model.pretrained: torchvision has no pretrained weights for '{arch}'") from None
    default = enum.DEFAULT
    filename = Path(default.url).name
    path = Path(torch.hub.get_dir()) / "checkpoints" / filename
    if not path.is_file():
        raise UserError(
            f"model.pretrained: weights for {arch} not found at {path} and this library never "
            f"downloads at run time; download {default.url} to that path, or pass "
            f"model.weights=FILE, or set model.pretrained=false to train from random init"
        )
    return path


for _arch, _desc in [
    ("resnet18", "torchvision ResNet-18, 512 features"),
    ("resnet34", "torchvision ResNet-34, 512 features"),
    ("resnet50", "torchvision ResNet-50, 2048 features"),
    ("efficientnet_b0", "torchvision EfficientNet-B0, 1280 features"),
    ("mobilenet_v3_small", "torchvision MobileNetV3-Small, 576 features"),
]:
    register_backbone(_arch, _desc)(_torchvision_factory(_arch))


_SIZE_WARNED: set[tuple[str, int]] = set()


def timm_normalisation(model: nn.Module) -> Normalisation:
    """The :class:`Normalisation` of a timm model: its resolved data config (mean, std, interpolation, crop_pct)."""
    from timm.data import resolve_data_config

    return Normalisation.from_timm(resolve_data_config({}, model=model))


def warn_input_size(backbone: str, model_size: int | None, image_size: int) -> None:
    """Warn once per (backbone, size) when ``data.image_size`` is not the model's default input size."""
    if model_size is None or int(model_size) == int(image_size) or (backbone, image_size) in _SIZE_WARNED:
        return
    _SIZE_WARNED.add((backbone, int(image_size)))
    log.warning("%s: images are %dx%d (data.image_size) but the model's default input size is %dx%d; "
                "data.image_size decides", backbone, image_size, image_size, model_size, model_size)


def _timm_backbone(name: str, pretrained: bool, weights: str | None) -> Backbone:
    """A timm model without its classifier; it carries its data config (see :func:`timm_normalisation`).

    The input size is not taken from the data config: ``data.image_size`` decides it
    (``default_input_size`` keeps the model's, for a warning when they differ).
    """
    try:
        import timm
    except ImportError:
        raise UserError(f"model.backbone: 'timm:{name}' needs timm (pip install timm)") from None
    try:
        model = timm.create_model(name, pretrained=False, num_classes=0)
    except Exception as exc:  # timm raises RuntimeError for unknown names
        raise UserError(f"model.backbone: timm has no model '{name}' ({exc})") from None
    from timm.data import resolve_data_config

    config = resolve_data_config({}, model=model)
    net = Backbone(model, model.num_features, pool=False, normalisation=Normalisation.from_timm(config))
    net.default_input_size = int(config["input_size"][-1])
    if weights:
        _load_into(net.body, weights, ignore_prefixes=("head.", "fc.", "classifier."))
    elif pretrained:
        raise UserError(
            f"model.pretrained: timm weights are not downloaded at run time; pass model.weights=FILE "
            f"for timm:{name} or set model.pretrained=false"
        )
    return net


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict safely: safetensors, or torch's format with ``weights_only=True``."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"weights file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as exc:
            raise UserError(f"{path}: not a readable safetensors file ({exc})") from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise UserError(f"{path}: cannot be loaded safely as weights ({type(exc).__name__})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise UserError(f"{path}: expected a state dict")
    return state


#: Where a folder given as ``model.weights`` keeps its backbone: (file, key prefix of the backbone's tensors).
_FOLDER_WEIGHTS = (("checkpoints/best.safetensors", "model.backbone."),   # a run folder (train / pretrain)
                   ("checkpoints/last.safetensors", "model.backbone."),
                   ("model.safetensors", "backbone."))                    # an exported model folder


def _backbone_state(path: str | Path) -> dict[str, torch.Tensor]:
    """The backbone tensors of ``model.weights``: a weights file, a run folder (its best checkpoint, else the
    last) or an exported model folder; in a folder only the backbone's tensors are taken."""
    p = Path(path).expanduser()
    if not p.is_dir():
        return load_state_dict_file(p)
    for name, prefix in _FOLDER_WEIGHTS:
        if (p / name).is_file():
            state = {k[len(prefix):]: v for k, v in load_state_dict_file(p / name).items() if k.startswith(prefix)}
            if not state:
                raise UserError(f"model.weights: {p / name} holds no backbone tensors")
            return state
    raise UserError(f"model.weights: {p} is a folder but neither a run folder (checkpoints/best.safetensors) "
                    "nor an exported model (model.safetensors)")


#: Backbones that split into a stem and stages (partial sharing, ``model.branch_at``), and how many stages.
STAGE_COUNTS: dict[str, int] = {"small_cnn": 3, "resnet18": 4, "resnet34": 4, "resnet50": 4}


def split_stages(name: str, body: nn.Module) -> tuple[nn.Module, list[nn.Module]]:
    """``(stem, stages)`` of a backbone's network ``body`` (its own modules, not copies).

    ``small_cnn``: the stem is the first conv block and its pooling, then 3 stages; a
    torchvision ResNet: conv1/bn1/relu/maxpool, then ``layer1``-``layer4``. Global pooling follows.
    """
    if name == "small_cnn":  # conv, pool, conv, pool, conv, pool, conv
        return nn.Sequential(*body[0:2]), [nn.Sequential(*body[2:4]), nn.Sequential(*body[4:6]),
                                           nn.Sequential(*body[6:7])]
    if name in STAGE_COUNTS:  # torchvision ResNet
        return nn.Sequential(body.conv1, body.bn1, body.relu, body.maxpool), [body.layer1, body.layer2,
                                                                              body.layer3, body.layer4]
    raise UserError(f"model.branch_at: cannot split {name!r} into stages")


def _load_one_branch(name: str, body: nn.Module, state: dict[str, torch.Tensor], path: str) -> bool:
    """Load the weights of a model trained with ``model.branch_at`` that hold one branch (an exported head)
    into the plain network ``body``: its trunk and its branch are one whole backbone. False: not such weights."""
    branches = sorted({k.split(".")[1] for k in state if k.startswith("branches.")})
    if not branches:
        return False
    if len(branches) > 1:
        raise UserError(f"model.weights: {path} holds {len(branches)} backbone branches ({', '.join(branches)}) of a "
                        "model trained with model.branch_at; export one head (lossensemble export RUN --embedding "
                        "heads.<name>) and give that folder")
    if name not in STAGE_COUNTS:
        raise UserError(f"{path}: weights of a model trained with model.branch_at fit {', '.join(STAGE_COUNTS)}, "
                        f"not {name}")
    stem, stages = split_stages(name, body)
    for cut in range(len(stages)):  # the same layout as BranchedBackbone: body = trunk, branches.<name> = the rest
        layout = nn.Module()
        layout.body = nn.Sequential(stem, *stages[:cut])
        layout.branches = nn.ModuleDict({branches[0]: nn.Sequential(*stages[cut:])})
        if set(layout.state_dict()) == set(state):
            layout.load_state_dict(state)
            log.info("loaded backbone weights from %s (trunk and branch %s)", path, branches[0])
            return True
    raise UserError(f"{path}: weights do not fit the backbone ({name} with one branch)")


def _load_into(module: nn.Module, path: str, ignore_prefixes: tuple[str, ...] = (), name: str = "") -> None:
    state = _backbone_state(path)
    body = module.body if isinstance(module, Backbone) else module
    if _load_one_branch(name, body, state, path):
        return
    # Accept files saved from a whole Backbone ("body."-prefixed) or from the bare network.
    own = module.state_dict()
    if not any(k in own for k in state) and any(k.startswith("body.") for k in state):
        state = {k[len("body."):]: v for k, v in state.items() if k.startswith("body.")}
    state = {k: v for k, v in state.items() if not k.startswith(ignore_prefixes)}
    missing, unexpected = module.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith(ignore_prefixes)]
    if missing:
        raise UserError(f"{path}: weights do not fit the backbone (missing {len(missing)} tensors, e.g. {missing[0]})")
    if unexpected:
        log.warning("%s: %d unused tensors in the weights file (e.g. %s)", path, len(unexpected), unexpected[0])
    log.info("loaded backbone weights from %s", path)


def freeze_batchnorm(module: nn.Module) -> None:
    """Put every BatchNorm layer in eval mode with frozen affine parameters."""
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()
            for p in m.parameters():
                p.requires_grad_(False)


def build_backbone(name: str, pretrained: bool = False, weights: str | None = None) -> Backbone:
    """Build a backbone by registry name (or ``timm:<name>``)."""
    if name.startswith("timm:"):
        return _timm_backbone(name[5:], pretrained, weights)
    if name not in BACKBONES:
        raise UserError(BACKBONES.unknown_message(name) + " (or timm:<name>)")
    return BACKBONES[name].factory(pretrained, weights)
