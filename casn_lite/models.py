"""Re-ID models on torchvision ResNets: IDE and PCB (docs/method.md, section 1).

IDE = ResNet backbone (conv1..conv5) -> global average pooling -> FC -> BN -> ReLU
-> dropout -> FC to identity logits. PCB (Sun et al. 2018) cuts the conv5 map into 6
horizontal stripes, each with its own reduction and classifier. The forward pass returns
what CASN needs:

* ``feature_map`` A  [B, C, h, w]  the last conv map (Grad-CAM is taken here);
* ``embedding``   f  [B, D]        the retrieval feature (IDE: BN output; PCB: the stripes'
                                   reduced features, concatenated);
* ``logits``      s  [B, num_ids]  identity scores (PCB: summed over the stripes);
* ``part_logits``    [B, P, num_ids] PCB only: each stripe's scores, for the summed IDE loss.
"""

from __future__ import annotations

import pickle
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torchvision
from torch import nn

from .saving import save_torch

__all__ = ["ReIDOutput", "IDE", "PCB", "build_model", "PretrainedWeightsUnavailable",
           "BACKBONES", "ARCHS", "EMBED_DIMS", "default_embed_dim", "save_checkpoint", "load_checkpoint", "plain_values"]

BACKBONES = {"resnet18": 512, "resnet34": 512, "resnet50": 2048}  # name -> channels of conv5


class PretrainedWeightsUnavailable(RuntimeError):
    """ImageNet weights were asked for but cannot be loaded (offline, no cached copy)."""


@dataclass
class ReIDOutput:
    feature_map: torch.Tensor  # A: last conv map [B, C, h, w]
    embedding: torch.Tensor  # f: retrieval feature [B, D]
    logits: torch.Tensor  # s: identity scores [B, num_classes]
    part_logits: torch.Tensor | None = None  # PCB: each stripe's scores [B, P, num_classes]

    @property
    def identity_logits(self) -> torch.Tensor:
        """The scores L_ide is taken of: each stripe's for PCB ([B, P, N], one loss per stripe),
        else the identity scores ([B, N])."""
        return self.logits if self.part_logits is None else self.part_logits


def _imagenet_weights(backbone: str):
    """torchvision's default ImageNet weights enum for a backbone."""
    return torchvision.models.get_model_weights(backbone).DEFAULT


def _load_backbone(backbone: str, pretrained: bool, fallback_to_scratch: bool) -> nn.Module:
    """A torchvision ResNet, with ImageNet weights when asked and available."""
    if backbone not in BACKBONES:
        raise ValueError(f"unknown backbone {backbone!r}; choose one of {', '.join(BACKBONES)}")
    if not pretrained:
        return torchvision.models.get_model(backbone, weights=None)
    weights = _imagenet_weights(backbone)
    try:
        return torchvision.models.get_model(backbone, weights=weights)
    except Exception as err:  # offline: URLError, socket errors, partial files
        where = f"{torch.hub.get_dir()}/checkpoints/{weights.url.rsplit('/', 1)[-1]}"
        message = (
            f"ImageNet weights for {backbone} could not be loaded ({type(err).__name__}: {err}).\n"
            f"Download {weights.url}\nand save it as {where}\n"
            "(or set TORCH_HOME to a folder that has it), or train from scratch with pretrained=False."
        )
        if not fallback_to_scratch:
            raise PretrainedWeightsUnavailable(message) from err
        warnings.warn(message + "\nContinuing from scratch, as fallback_to_scratch=True asked.", stacklevel=3)
        return torchvision.models.get_model(backbone, weights=None)


def _trunk(backbone: str, pretrained: bool, fallback_to_scratch: bool, last_stride: int) -> nn.Sequential:
    """ResNet conv1..conv5 without pooling and classifier; ``last_stride=1`` keeps a twice
    larger conv5 map (common in re-ID, and PCB's setting)."""
    resnet = _load_backbone(backbone, pretrained, fallback_to_scratch)
    if last_stride == 1:  # conv5's first block: stride 2 -> 1 in the 3x3 conv and the shortcut
        block = resnet.layer4[0]
        (block.conv2 if hasattr(block, "conv3") else block.conv1).stride = (1, 1)
        block.downsample[0].stride = (1, 1)
    return nn.Sequential(resnet.conv1, resnet.bn1, resnet.relu, resnet.maxpool,
                         resnet.layer1, resnet.layer2, resnet.layer3, resnet.layer4)


class IDE(nn.Module):
    """ResNet trunk + IDE head."""

    def __init__(self, num_classes: int, backbone: str = "resnet50", pretrained: bool = False,
                 last_stride: int = 1, embed_dim: int = 512, dropout: float = 0.5,
                 fallback_to_scratch: bool = False):
        super().__init__()
        self.trunk = _trunk(backbone, pretrained, fallback_to_scratch, last_stride)
        self.feature_dim = embed_dim  # size of the retrieval feature f
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.embed = nn.Sequential(nn.Linear(BACKBONES[backbone], embed_dim), nn.BatchNorm1d(embed_dim))
        # not in place: the ReLU must leave the embedding f (the BN output) untouched
        self.head = nn.Sequential(nn.ReLU(), nn.Dropout(dropout), nn.Linear(embed_dim, num_classes))
        nn.init.kaiming_normal_(self.embed[0].weight, mode="fan_out")
        nn.init.zeros_(self.embed[0].bias)
        nn.init.normal_(self.head[-1].weight, std=0.001)
        nn.init.zeros_(self.head[-1].bias)

    def forward_head(self, feature_map: torch.Tensor) -> ReIDOutput:
        """Embedding and logits from a conv5 map (Grad-CAM re-uses this on a map it holds)."""
        embedding = self.embed(self.pool(feature_map).flatten(1))
        return ReIDOutput(feature_map, embedding, self.head(embedding))

    def forward(self, images: torch.Tensor) -> ReIDOutput:
        return self.forward_head(self.trunk(images))


class PCB(nn.Module):
    """Part-based Convolutional Baseline: conv5 cut into ``parts`` horizontal stripes.

    Each stripe g_j = the average of its rows of A; a 1x1 reduction (FC -> BN -> ReLU) gives
    h_j; a classifier per stripe gives s_j. Training sums the IDE loss over stripes; retrieval
    uses the stripes' h_j concatenated. For Grad-CAM, ``logits`` is the sum of the stripes'
    scores, so the true class's score s_c = sum_j s_c^j: each stripe classifier sends gradient
    only into its own rows, and the channel weights average over the whole map.
    """

    def __init__(self, num_classes: int, backbone: str = "resnet50", pretrained: bool = False,
                 last_stride: int = 1, embed_dim: int = 256, dropout: float = 0.5,
                 fallback_to_scratch: bool = False, parts: int = 6):
        super().__init__()
        self.parts = parts
        self.feature_dim = parts * embed_dim  # the stripes' features, concatenated
        self.trunk = _trunk(backbone, pretrained, fallback_to_scratch, last_stride)
        self.pool = nn.AdaptiveAvgPool2d((parts, 1))  # g_j: one vector per stripe
        channels = BACKBONES[backbone]
        self.reduce = nn.ModuleList(
            nn.Sequential(nn.Linear(channels, embed_dim), nn.BatchNorm1d(embed_dim), nn.ReLU(inplace=True))
            for _ in range(parts))
        self.classify = nn.ModuleList(
            nn.Sequential(nn.Dropout(dropout), nn.Linear(embed_dim, num_classes)) for _ in range(parts))
        for r in self.reduce:
            nn.init.kaiming_normal_(r[0].weight, mode="fan_out")
            nn.init.zeros_(r[0].bias)
        for c in self.classify:
            nn.init.normal_(c[-1].weight, std=0.001)
            nn.init.zeros_(c[-1].bias)

    def forward_head(self, feature_map: torch.Tensor) -> ReIDOutput:
        if feature_map.shape[2] < self.parts:
            raise ValueError(f"PCB cuts the conv5 map into {self.parts} stripes, but it has only "
                             f"{feature_map.shape[2]} rows: use a taller input (at least "
                             f"{16 * self.parts} pixels with last_stride=1)")
        stripes = self.pool(feature_map).squeeze(-1)  # [B, C, P]
        h = [reduce(stripes[:, :, j]) for j, reduce in enumerate(self.reduce)]  # h_j
        part_logits = torch.stack([c(hj) for c, hj in zip(self.classify, h, strict=True)], dim=1)
        return ReIDOutput(feature_map, torch.cat(h, dim=1), part_logits.sum(dim=1), part_logits)

    def forward(self, images: torch.Tensor) -> ReIDOutput:
        return self.forward_head(self.trunk(images))


ARCHS = {"ide": IDE, "pcb": PCB}  # every architecture, by the name profiles and commands use
EMBED_DIMS = {"ide": 512, "pcb": 256}  # each one's embedding size when none is given (PCB: per stripe)


def default_embed_dim(arch: str, embed_dim: int | None = None) -> int:
    """``embed_dim``, or the architecture's default when it is None (or 0)."""
    return embed_dim or EMBED_DIMS[arch]


def build_model(arch: str = "ide", backbone: str = "resnet50", num_classes: int = 751,
                pretrained: bool | str = False, last_stride: int = 1, embed_dim: int | None = None,
                dropout: float = 0.5, fallback_to_scratch: bool = False) -> nn.Module:
    """Build a re-ID model: ``arch="ide"`` (embedding 512 by default) or ``"pcb"`` (6 stripes of
    256). ``pretrained=True`` loads ImageNet weights through torchvision's weights API; when
    they cannot be had, it raises PretrainedWeightsUnavailable with the steps to fix it, unless
    ``fallback_to_scratch=True``. ``pretrained="auto"``: the weights when available, else
    scratch with a warning."""
    if arch not in ARCHS:
        raise ValueError(f"unknown arch {arch!r}; choose one of {', '.join(ARCHS)}")
    if pretrained == "auto":
        pretrained, fallback_to_scratch = True, True
    if isinstance(pretrained, str):
        raise ValueError(f"pretrained={pretrained!r}: build_model loads ImageNet weights (True) or none (False); "
                         "a SynthPeople-pretrained start is StartConfig(pretrained='synthpeople') in ablation.ide_start")
    embed_dim = default_embed_dim(arch, embed_dim)
    model = ARCHS[arch](num_classes, backbone, bool(pretrained), last_stride, embed_dim, dropout,
                        fallback_to_scratch)
    # how to build it again, for save_checkpoint (weights come from the checkpoint, not ImageNet)
    model.build_args = {"arch": arch, "backbone": backbone, "num_classes": num_classes,
                        "last_stride": last_stride, "embed_dim": embed_dim, "dropout": dropout}
    return model


CHECKPOINT_FORMAT = "casn-lite model"


def save_checkpoint(model: nn.Module, path: str | Path, input_size: tuple[int, int], **info) -> Path:
    """Save a trained model for inference: its weights, how to rebuild it, the input size
    (height, width) it was trained at, and any ``info`` (dataset, metrics, ...). Everything
    but the weights is stored as plain values (numbers, strings, lists, dicts), so that
    ``load_checkpoint`` reads it with ``torch.load(weights_only=True)``: no code runs."""
    if not hasattr(model, "build_args"):
        raise ValueError("save_checkpoint needs a model made by build_model (it records how to rebuild it)")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"format": CHECKPOINT_FORMAT, "version": 1, "build_args": plain_values(model.build_args),
             "input_size": [int(v) for v in input_size], "state_dict": model.state_dict(), "info": plain_values(info)}
    return save_torch(state, path)  # under a temporary name, removed whatever stops the write


def plain_values(value):
    """``value`` as plain Python values (numbers, strings, lists, dicts), what
    ``torch.load(weights_only=True)`` reads without running code: numpy and torch numbers and
    arrays become numbers and lists, tuples become lists, anything else its string."""
    if isinstance(value, dict):
        return {str(k): plain_values(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain_values(v) for v in value]
    if isinstance(value, np.ndarray | np.generic | torch.Tensor):
        return plain_values(value.tolist())
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def load_checkpoint(path: str | Path, device: torch.device | str = "cpu") -> tuple[nn.Module, dict]:
    """A model saved by ``save_checkpoint``, rebuilt, in evaluation mode on ``device``, and a
    dict with its ``input_size`` and ``info``. The file is read with ``weights_only=True`` (a
    file that would run code is refused); a corrupt, truncated or mismatched file raises
    ValueError saying so."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    state = _read_weights_only(path)
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        hint = " (a training checkpoint from fit? export the model with save_checkpoint)" if (
            isinstance(state, dict) and "optimizer" in state) else ""
        raise ValueError(f"{path} is not a casn-lite model checkpoint{hint}")
    try:
        model = build_model(**state["build_args"])
    except (TypeError, ValueError, KeyError) as err:
        raise ValueError(f"{path}: cannot rebuild the model it describes ({err})") from None
    try:
        model.load_state_dict(state["state_dict"])
    except (RuntimeError, KeyError) as err:
        first = str(err).strip().splitlines()[0]
        raise ValueError(f"{path}: its weights do not match the architecture it records "
                         f"({state['build_args']}): {first}") from None
    return model.to(device).eval(), {"input_size": tuple(state["input_size"]), "info": state["info"]}


def _read_weights_only(path: Path):
    """``torch.load(weights_only=True)`` with one-line errors for unsafe and damaged files."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if "Weights only load failed" in str(err):
            raise ValueError(f"{path} refused: it holds objects other than tensors and plain values, "
                             "which could run code when loaded (was it written by save_checkpoint?)") from None
        raise ValueError(f"{path} is corrupt or truncated ({err})") from None
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise ValueError(f"{path} is corrupt or truncated ({type(err).__name__}: {str(err)[:200]})") from None
