"""Re-ID models on torchvision ResNets: the IDE baseline (DESIGN.md section 2).

IDE = ResNet backbone (conv1..conv5) -> global average pooling -> FC -> BN -> ReLU
-> dropout -> FC to identity logits. The forward pass returns three things, because
CASN needs all of them:

* ``feature_map`` A  [B, C, h, w]  the last conv map (Grad-CAM is taken here);
* ``embedding``   f  [B, D]        the retrieval feature (BN output, before ReLU);
* ``logits``      s  [B, num_ids]  identity scores for the IDE loss.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
import torchvision
from torch import nn

__all__ = ["ReIDOutput", "IDE", "SiameseHead", "build_model", "PretrainedWeightsUnavailable", "BACKBONES"]

BACKBONES = {"resnet18": 512, "resnet34": 512, "resnet50": 2048}  # name -> channels of conv5


class PretrainedWeightsUnavailable(RuntimeError):
    """ImageNet weights were asked for but cannot be loaded (offline, no cached copy)."""


@dataclass
class ReIDOutput:
    feature_map: torch.Tensor  # A: last conv map [B, C, h, w]
    embedding: torch.Tensor  # f: retrieval feature [B, D]
    logits: torch.Tensor  # s: identity scores [B, num_classes]


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


class IDE(nn.Module):
    """ResNet trunk + IDE head. ``last_stride=1`` keeps a twice larger conv5 map (common in re-ID)."""

    def __init__(self, num_classes: int, backbone: str = "resnet50", pretrained: bool = False,
                 last_stride: int = 1, embed_dim: int = 512, dropout: float = 0.5,
                 fallback_to_scratch: bool = False):
        super().__init__()
        resnet = _load_backbone(backbone, pretrained, fallback_to_scratch)
        if last_stride == 1:  # conv5's first block: stride 2 -> 1 in the 3x3 conv and the shortcut
            block = resnet.layer4[0]
            (block.conv2 if hasattr(block, "conv3") else block.conv1).stride = (1, 1)
            block.downsample[0].stride = (1, 1)
        self.trunk = nn.Sequential(resnet.conv1, resnet.bn1, resnet.relu, resnet.maxpool,
                                   resnet.layer1, resnet.layer2, resnet.layer3, resnet.layer4)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.embed = nn.Sequential(nn.Linear(BACKBONES[backbone], embed_dim), nn.BatchNorm1d(embed_dim))
        self.head = nn.Sequential(nn.ReLU(inplace=True), nn.Dropout(dropout), nn.Linear(embed_dim, num_classes))
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


def build_model(arch: str = "ide", backbone: str = "resnet50", num_classes: int = 751,
                pretrained: bool = False, last_stride: int = 1, embed_dim: int = 512,
                dropout: float = 0.5, fallback_to_scratch: bool = False) -> nn.Module:
    """Build a re-ID model. ``pretrained=True`` loads ImageNet weights through torchvision's
    weights API; when they cannot be had, it raises PretrainedWeightsUnavailable with the steps
    to fix it, unless ``fallback_to_scratch=True`` (then it warns and starts from scratch)."""
    if arch != "ide":
        raise ValueError(f"unknown arch {arch!r}; available: 'ide'")
    return IDE(num_classes, backbone, pretrained, last_stride, embed_dim, dropout, fallback_to_scratch)


class SiameseHead(nn.Module):
    """CASN's same/different classifier on a pair's feature difference f_minus = f1 - f2:
    FC -> ReLU -> FC to two logits z = (z_diff, z_same)."""

    def __init__(self, feature_dim: int = 512, hidden_dim: int = 512):
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(feature_dim, hidden_dim), nn.ReLU(inplace=True),
                                    nn.Linear(hidden_dim, 2))

    def forward(self, difference: torch.Tensor) -> torch.Tensor:
        return self.layers(difference)
