"""Attention measured, not only shown: where a trained model's attention falls on test pairs.

``evaluate_attention`` is what notebooks 03-05 and the attention study report beside
retrieval: the cross-camera consistency of the similarity attention (the profile distance
SA minimises, ``attention_profile`` and ``attention_distance``), and with SynthPeople's
masks the share of attention on the person and on the identity cue (``mass_share``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from .attention import (
    attention_profile,
    empty_maps,
    grad_cam,
    mass_share,
    similarity_attention,
    upsample,
)
from .data.synth import MASK_CUE, MASK_DECOY, MASK_SIGN, MASK_TAG, PERSON_MASK_VALUES
from .devices import default_device
from .evaluation import roc_auc
from .losses import attention_distance, siamese_attention, siamese_bce_loss

__all__ = ["evaluate_attention", "attention_lift", "person_lift", "AttentionReport"]


@dataclass(frozen=True)
class AttentionReport:
    """What ``evaluate_attention`` measures, one field per quantity (None: not measured,
    because the pairs have no masks or no Siamese head was given; NaN: nothing to average,
    such as every map empty). ``as_dict()`` gives the measured ones, for a table's row."""

    positive_distance: float  # mean ||M*_m1 - M*_m2||_2, same-person pairs (similarity attention)
    negative_distance: float  # the same over different-person pairs
    empty: float  # share of similarity maps with no attention at all
    class_empty: float  # share of class Grad-CAM maps (top training identity) that are empty
    sa_positive_distance: float | None = None  # SA's own attention (with the head), same-person pairs
    sa_empty: float | None = None  # share of same-person pairs where SA's maps are empty
    head_bce: float | None = None  # the Siamese head's L_bce on these pairs (ln 2 = 0.693: chance)
    head_auc: float | None = None  # its ROC AUC, margin z_same - z_diff against same/different (0.5: chance)
    on_person: float | None = None  # similarity attention: mean share of its mass on the person
    person_lift: float | None = None  # on_person / person_area (1: an even spread)
    on_cue: float | None = None  # ... on the identity cue
    cue_lift: float | None = None
    class_on_person: float | None = None  # the same for the class Grad-CAM
    class_person_lift: float | None = None
    class_on_cue: float | None = None
    class_cue_lift: float | None = None
    person_area: float | None = None  # the person's mean share of the image
    cue_area: float | None = None  # the cue's
    # the positive control's shortcuts (SynthConfig(control=True)), measured where its masks hold them
    on_tag: float | None = None  # similarity attention on the name tag
    tag_lift: float | None = None
    on_sign: float | None = None  # ... on the camera sign
    sign_lift: float | None = None
    class_on_tag: float | None = None
    class_tag_lift: float | None = None
    class_on_sign: float | None = None
    class_sign_lift: float | None = None
    tag_area: float | None = None
    sign_area: float | None = None
    # version 3's decoy (SynthConfig(decoy=True)): attention on it, and the same-person profile
    # distance split by whether a view of the pair shows it
    on_decoy: float | None = None
    decoy_lift: float | None = None
    class_on_decoy: float | None = None
    class_decoy_lift: float | None = None
    decoy_area: float | None = None
    positive_distance_decoy: float | None = None  # same-person pairs where a view shows the decoy
    positive_distance_clear: float | None = None  # ... where neither does
    # the same split for the name tag (version 4 moves it; any control measures it)
    positive_distance_tag: float | None = None  # same-person pairs where a view shows the tag
    positive_distance_no_tag: float | None = None  # ... where neither does

    def as_dict(self) -> dict[str, float]:
        return {k: v for k, v in asdict(self).items() if v is not None}


def _class_attention(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Grad-CAM of each test image's top-scoring training identity (its true identity is not
    one of the classes), in evaluation mode: [B, 1, h, w]."""
    out = model(images)
    return grad_cam(out.logits.amax(dim=1), out.feature_map)


def regions(mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """The regions attention is measured on, from a SynthPeople mask [B, H, W]: the person
    (its cue and name tag included), the identity cue, and the positive control's name tag
    and camera sign and version 3's decoy (empty on the default data)."""
    return {"person": torch.isin(mask, torch.tensor(PERSON_MASK_VALUES, device=mask.device)),
            "cue": mask == MASK_CUE, "tag": mask == MASK_TAG, "sign": mask == MASK_SIGN,
            "decoy": mask == MASK_DECOY}


def _masked_mean(values: torch.Tensor, keep: torch.Tensor) -> float:
    return values[keep].mean().item() if keep.any() else float("nan")


def attention_lift(share: torch.Tensor, area: torch.Tensor) -> float:
    """Mean attention share on a region over the region's mean share of the image, per image
    ``share`` (``mass_share``; NaN for an empty map, left out) and ``area``: 1.0 is no better
    than spreading attention evenly. NaN when every map is empty."""
    keep = ~share.isnan()  # empty maps attend nowhere
    return _masked_mean(share, keep) / _masked_mean(area, keep) if keep.any() else float("nan")


def person_lift(maps: torch.Tensor, masks: torch.Tensor) -> float:
    """Attention on the person as lift (``attention_lift``) for maps [B, 1, h, w] of the
    pictures whose SynthPeople masks are ``masks`` [B, H, W]: what a figure of attention
    maps shows, in the unit every notebook uses (1.0: an even spread)."""
    person = regions(masks)["person"]
    share = mass_share(upsample(maps.detach().float().cpu(), masks.shape[-2:]), person.cpu())
    return attention_lift(share, person.flatten(1).float().mean(1).cpu())


def evaluate_attention(model: nn.Module, pair_loader, device: torch.device | None = None,
                       threshold: float | None = 0.2, length: int = 32,
                       head: nn.Module | None = None, indicator: str = "margin") -> AttentionReport:
    """Attention measured, not only shown, on pairs of test images from two cameras:

    * ``positive_distance`` / ``negative_distance``: mean ||M*_m1 - M*_m2||_2 of the
      similarity attention (Grad-CAM of cos(f1, f2), any variant, no head) over same-person
      and different-person pairs (lower for the same person: more consistent);
    * ``empty``: share of similarity maps with no attention at all; pairs with an empty map
      are left out of the distances, and empty maps out of the shares;
    * with SynthPeople masks (``mask1``, ``mask2``): ``on_person`` / ``on_cue``, the mean
      share of attention mass on the person and on the identity cue; ``person_area`` /
      ``cue_area``, their mean share of the image; ``person_lift`` / ``cue_lift`` = share /
      area (1: no better than spreading attention evenly); the same for the class Grad-CAM
      of each image's top training identity: ``class_empty``, ``class_on_person``,
      ``class_person_lift``, ``class_on_cue``, ``class_cue_lift``; on the positive control
      (``SynthConfig(control=True)``) the same for its name tag and camera sign (``tag_lift``,
      ``sign_lift``, ``class_tag_lift``, ...), and for version 3's decoy (``SynthConfig(decoy=
      True)``) ``decoy_lift``, ``class_decoy_lift`` and ``positive_distance_decoy`` /
      ``positive_distance_clear``, the same-person distance on pairs where a view shows the
      decoy / where neither does (for the name tag: ``positive_distance_tag`` /
      ``positive_distance_no_tag``);
    * with the Siamese ``head``: ``sa_positive_distance`` and ``sa_empty``, SA's own
      attention (Grad-CAM of <alpha, f_i>) on the same-person pairs; ``head_bce`` and
      ``head_auc``, how well the head tells same from different on these held-out
      cross-camera pairs (chance: ln 2 and 0.5).

    Returns an ``AttentionReport``.
    """
    device = device or default_device()
    model.to(device).eval()
    if head is not None:
        head.to(device).eval()
    rows: dict[str, list[torch.Tensor]] = {}

    def add(key: str, value: torch.Tensor) -> None:
        rows.setdefault(key, []).append(value.detach().float().cpu())

    for batch in pair_loader:
        x1, x2 = batch["image1"].to(device), batch["image2"].to(device)
        same = batch["same"].bool()
        sim = similarity_attention(model, x1, x2)
        cls = _class_attention(model, torch.cat([x1, x2])).chunk(2)
        add("same", same)
        (_, profile1), (_, profile2) = (attention_profile(m.detach().float(), x1.shape[-2:], threshold, length)
                                        for m in sim)
        add("distance", attention_distance(profile1, profile2))  # ||M*_m1 - M*_m2||_2
        sim_empty = [empty_maps(m) for m in sim]
        add("valid", ~(sim_empty[0] | sim_empty[1]))
        if head is not None:
            sa = siamese_attention(model, head, x1, x2, indicator, False, threshold, length)
            add("sa_distance", attention_distance(sa.cropped1, sa.cropped2))
            add("sa_valid", sa.valid)
            add("head_logits", sa.pair_logits)  # z = (z_diff, z_same)
        for side, key in enumerate(("mask1", "mask2")):
            add("empty", sim_empty[side])
            add("class_empty", empty_maps(cls[side]))
            if key not in batch:
                continue
            where = regions(batch[key].to(device))
            for region in ("decoy", "tag"):  # whether this view shows it
                add(f"{region}{side + 1}", where[region].flatten(1).any(1))
            for prefix, maps in (("", sim[side]), ("class_", cls[side])):
                m = upsample(maps.detach().float(), x1.shape[-2:])
                for region, inside in where.items():
                    add(f"{prefix}on_{region}", mass_share(m, inside))
            for region, inside in where.items():
                add(f"{region}_area", inside.flatten(1).float().mean(1))
    col = {k: torch.cat(v) for k, v in rows.items()}
    same, valid = col["same"].bool(), col["valid"].bool()
    result = {"positive_distance": _masked_mean(col["distance"], same & valid),
              "negative_distance": _masked_mean(col["distance"], ~same & valid),
              "empty": col["empty"].mean().item(), "class_empty": col["class_empty"].mean().item()}
    if head is not None:
        sa_valid = col["sa_valid"].bool()
        result["sa_positive_distance"] = _masked_mean(col["sa_distance"], same & sa_valid)
        result["sa_empty"] = 1 - sa_valid[same].float().mean().item()
        logits = col["head_logits"]
        result["head_bce"] = siamese_bce_loss(logits, same).item()
        result["head_auc"] = roc_auc(logits[:, 1] - logits[:, 0], same)  # the margin z_same - z_diff ranks "same"
    for region, with_it, without in (("decoy", "positive_distance_decoy", "positive_distance_clear"),
                                     ("tag", "positive_distance_tag", "positive_distance_no_tag")):
        if f"{region}1" in col and col[f"{region}_area"].any():  # consistency with and without it
            shown = col[f"{region}1"].bool() | col[f"{region}2"].bool()
            result[with_it] = _masked_mean(col["distance"], same & valid & shown)
            result[without] = _masked_mean(col["distance"], same & valid & ~shown)
    # the name tag, the camera sign and the decoy only where the masks hold them (the positive control)
    measured = [r for r in ("person", "cue", "tag", "sign", "decoy")
                if f"{r}_area" in col and (r in ("person", "cue") or col[f"{r}_area"].any())]
    for region in measured:
        for prefix in ("", "class_"):
            share, area = col[f"{prefix}on_{region}"], col[f"{region}_area"]
            result[f"{prefix}on_{region}"] = _masked_mean(share, ~share.isnan())  # empty maps left out
            result[f"{prefix}{region}_lift"] = attention_lift(share, area)
        result[f"{region}_area"] = col[f"{region}_area"].mean().item()
    return AttentionReport(**result)
