"""Attention as CASN uses it: Grad-CAM you can train through, soft masks, attention profiles.

Each equation of docs/method.md (sections 3 and 4) is one function here (paper symbols in comments):

* ``grad_cam``            M = ReLU(sum_k w_k A_k),  w_k = GAP(d score / d A_k), per image in [0, 1]
* ``upsample``            M at the image's size
* ``soft_mask``           T(M) = sigmoid(omega (M - sigma))
* ``erase_attended``      I* = I - T(M) * I
* ``horizontal_profile``  M_m[h] = max_w M[h, w]
* ``crop_and_resize``     M*_m: the rows above a threshold, stretched to a fixed length
* ``attention_profile``   M_m and M*_m of a batch of maps, as SA compares them
* ``indicator_vector``    alpha: which feature dimensions make a pair look "the same"

and one measurement the paper could not make without masks:

* ``mass_share``          the share of an attention map that falls inside a region
* ``similarity_attention`` where two images make each other look alike, for any model

A note on batches: in training mode, batch norm makes each image's conv map and score
depend on the other images of the batch, and dropout sits between A and the class score,
so a Grad-CAM taken there is not the map of that image (cosine 0.5 with it, measured). The
losses therefore take their attention from a forward pass in evaluation mode
(``evaluation_mode``), with gradients on: each map is exactly the textbook,
one-image-at-a-time Grad-CAM (``tests/test_attention.py`` checks this against hooks on a
torchvision ResNet, and ``tests/test_loss_terms.py`` in training mode on a trained model),
and the attention losses train the network as it is used at test time.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "grad_cam", "normalize_per_image", "upsample", "soft_mask", "erase_attended",
    "horizontal_profile", "profile_span", "crop_and_resize", "attention_profile", "indicator_vector",
    "INDICATORS",
    "frozen_batchnorm_stats", "evaluation_mode", "empty_maps", "mass_share",
    "similarity_attention",
]


def normalize_per_image(maps: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Scale each map of a [B, 1, h, w] batch to [0, 1]; an all-constant map becomes zeros."""
    flat = maps.flatten(1)
    low = flat.min(dim=1, keepdim=True).values
    high = flat.max(dim=1, keepdim=True).values
    return ((flat - low) / (high - low).clamp_min(eps)).view_as(maps)


def grad_cam(score: torch.Tensor, feature_map: torch.Tensor, create_graph: bool = False,
             normalize: bool = True) -> torch.Tensor:
    """Grad-CAM of per-image scores on the conv map A ([B, K, h, w]) -> [B, 1, h, w].

    Every image's map is the gradient of ``score.sum()`` with respect to its own A, so pass
    scores that each depend on one image's map (``evaluation_mode`` makes sure of that);
    a pair's score (notebook 05's similarity) gives both of its images their own map.

    ``create_graph=False`` (first order, as public GAIN code): a loss on the map reaches the
    network through A only; the channel weights w_k are constants. ``create_graph=True``
    (second order): it also reaches it through w_k, i.e. through d score / d A.
    """
    # d s / d A_k, for every image at once (each image's score depends on its own A)
    (grads,) = torch.autograd.grad(score.sum(), feature_map, create_graph=create_graph,
                                   retain_graph=True)
    weights = grads.mean(dim=(2, 3), keepdim=True)  # w_k = GAP(d s / d A_k)
    cam = F.relu((weights * feature_map).sum(dim=1, keepdim=True))  # M = ReLU(sum_k w_k A_k)
    return normalize_per_image(cam) if normalize else cam


def upsample(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of [B, 1, h, w] maps to the image size (H, W)."""
    return F.interpolate(maps, size=size, mode="bilinear", align_corners=False)


def soft_mask(attention: torch.Tensor, sigma: float = 0.5, omega: float = 10.0) -> torch.Tensor:
    """T(M) = sigmoid(omega (M - sigma)): a differentiable "M > sigma" (GAIN's defaults)."""
    return torch.sigmoid(omega * (attention - sigma))


def erase_attended(images: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """I* = I - T(M) * I: remove what the network attends to. Images are normalised, so a
    removed pixel becomes 0, the dataset's mean colour."""
    return images - mask * images


def horizontal_profile(attention: torch.Tensor) -> torch.Tensor:
    """M_m[h] = max_w M[h, w]: one value per row, [B, 1, H, W] -> [B, H]."""
    return attention.amax(dim=-1).flatten(1)


def profile_span(profile: torch.Tensor, threshold: float | None) -> tuple[torch.Tensor, torch.Tensor]:
    """First and last row of each profile whose value exceeds ``threshold`` x its maximum."""
    rows = torch.arange(profile.shape[1], device=profile.device)
    if threshold is None:
        return torch.zeros_like(profile[:, 0], dtype=torch.long), torch.full_like(
            profile[:, 0], profile.shape[1] - 1, dtype=torch.long)
    above = profile.detach() > threshold * profile.detach().amax(dim=1, keepdim=True)
    above |= ~above.any(dim=1, keepdim=True)  # nothing above (an all-zero map): keep every row
    first = torch.where(above, rows, profile.shape[1]).amin(dim=1)
    last = torch.where(above, rows, -1).amax(dim=1)
    return first, last


def crop_and_resize(profile: torch.Tensor, threshold: float | None = 0.2,
                    length: int = 32) -> torch.Tensor:
    """M*_m: crop each profile [B, H] to the rows above ``threshold`` x its max (the person's
    vertical span), then stretch that span to ``length`` values by linear interpolation.

    The span is chosen without gradient; the values are interpolated differentiably. With
    ``threshold=None`` nothing is cropped (the whole height is resized).
    """
    first, last = profile_span(profile, threshold)
    steps = torch.linspace(0, 1, length, device=profile.device, dtype=profile.dtype)
    position = first[:, None] + (last - first)[:, None].to(profile.dtype) * steps  # [B, L] rows
    below = position.floor().long().clamp(max=profile.shape[1] - 1)
    above = (below + 1).clamp(max=profile.shape[1] - 1)
    weight = position - below.to(profile.dtype)
    return profile.gather(1, below) * (1 - weight) + profile.gather(1, above) * weight


def attention_profile(maps: torch.Tensor, size: tuple[int, int], threshold: float | None = 0.2,
                      length: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """(M_m, M*_m) of [B, 1, h, w] maps: the horizontal profile at the image's size ([B, H]),
    and its span above ``threshold`` x its max stretched to ``length`` values ([B, L]): what
    SA's consistency term compares across two cameras."""
    profile = horizontal_profile(upsample(maps, size))  # M_m
    return profile, crop_and_resize(profile, threshold, length)  # M*_m


INDICATORS = ("margin", "same_logit", "difference")


def indicator_vector(pair_logits: torch.Tensor, difference: torch.Tensor,
                     mode: str = "margin") -> torch.Tensor:
    """alpha [B, D], binary: the feature dimensions that make a pair look like one person.

    ``pair_logits`` are the head's z = (z_diff, z_same) [B, 2], computed from ``difference``
    (f_minus, [B, D]).

    ``mode="margin"`` (default): alpha_i = 1 where d (z_same - z_diff) / d f_minus_i > 0, the
    gradient of the log-odds of "same", the only direction cross-entropy trains. (The sum
    z_same + z_diff receives exactly opposite gradients on the last layer's two rows, so it
    keeps its random initial value; docs/decisions.md.)
    ``mode="same_logit"`` (the earlier reading of the paper's Fig. 5): alpha_i = 1 where
    d z_same / d f_minus_i > 0, which carries that untrained part too.
    ``mode="difference"``: alpha_i = 1 where f_minus_i > 0.
    """
    if mode in ("margin", "same_logit"):
        score = pair_logits[:, 1] - pair_logits[:, 0] if mode == "margin" else pair_logits[:, 1]
        (grad,) = torch.autograd.grad(score.sum(), difference, retain_graph=True)
        return (grad > 0).to(difference.dtype)
    if mode == "difference":
        return (difference.detach() > 0).to(difference.dtype)
    raise ValueError(f"unknown indicator mode {mode!r}; choose one of {', '.join(INDICATORS)}")


@contextmanager
def frozen_batchnorm_stats(model: nn.Module):
    """Run batches that are not real images (masked ones) without moving BN's running stats.

    Batch norm still normalises with the batch's own statistics (training mode); only the
    running averages used at test time stay as the real images made them.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in norms]
    for m in norms:
        m.momentum = 0.0  # running = (1 - 0) * running + 0 * batch
    try:
        yield
    finally:
        for m, momentum in zip(norms, saved, strict=True):
            m.momentum = momentum


@contextmanager
def evaluation_mode(model: nn.Module):
    """Evaluation mode for a while (batch norm on its running statistics, no dropout), then
    every module back in the mode it had. Gradients stay on: a forward pass in here gives
    each image a conv map and scores that depend on that image alone, to take Grad-CAM of."""
    modules = list(model.modules())
    modes = [m.training for m in modules]
    model.eval()
    try:
        yield
    finally:
        for m, mode in zip(modules, modes, strict=True):
            m.training = mode


def empty_maps(attention: torch.Tensor) -> torch.Tensor:
    """Which maps of a [B, 1, h, w] batch hold no attention at all (ReLU cut everything): [B]
    booleans. An empty map has no gradient and no shape, so the consistency term and every
    attention metric leave it out (and report how many there were)."""
    return attention.detach().flatten(1).amax(dim=1) <= 0


def mass_share(attention: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
    """The share of each map's attention mass inside a region: sum(M * R) / sum(M), in [0, 1].

    ``attention`` [B, 1, H, W] (non-negative, at the region's size), ``region`` [B, H, W] or
    [B, 1, H, W], boolean. A map with no mass at all attends nowhere: NaN (use ``nanmean``)."""
    region = region.reshape(attention.shape).to(attention.dtype)
    total = attention.flatten(1).sum(1)
    inside = (attention * region).flatten(1).sum(1)
    return torch.where(total > 0, inside / total.clamp_min(torch.finfo(attention.dtype).tiny), torch.nan)


def similarity_attention(model: nn.Module, images1: torch.Tensor, images2: torch.Tensor
                         ) -> tuple[torch.Tensor, torch.Tensor]:
    """(maps of images1, maps of images2): for each pair, Grad-CAM of its one score
    s = cos(f1, f2) taken on image 1's conv map and, separately, on image 2's.

    The score is passed once per pair (not once per image): its gradient reaches both
    images' maps, and each map keeps only its own image's part of it. It needs no Siamese head, so it measures every variant (IDE included) the same way:
    which rows of each image make the pair match, as test-time retrieval sees it."""
    out = model(torch.cat([images1, images2]))
    f1, f2 = out.embedding.chunk(2)
    similarity = F.cosine_similarity(f1, f2, dim=1)  # one score per pair, [B]
    # grad_cam differentiates the sum of the scores, so passing each pair's similarity once
    # gives image 1 and image 2 of that pair each their own gradient of it
    maps = grad_cam(similarity, out.feature_map)
    return maps.chunk(2)
