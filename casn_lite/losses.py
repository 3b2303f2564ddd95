"""CASN's losses: L = L_ide + lambda_1 L_ia + lambda_2 L_sa (docs/method.md, sections 2-5).

Two forward passes build the attention the losses need, and return every intermediate so
the notebooks can draw them:

* ``identification_attention``: Grad-CAM of the true class, soft mask, masked image and
  the network's scores on it (IA, after GAIN);
* ``siamese_attention``: pair features, the same/different logits, the indicator vector,
  Grad-CAM of s_i = <alpha, f_i> and the cropped horizontal profiles (SA).

``CASNLoss`` combines them behind flags, so IDE, IDE+IA, IDE+SA and CASN(IDE) are one
training loop with different arguments:

    CASNLoss(ia=False, sa=False)   # IDE
    CASNLoss(ia=True,  sa=False)   # IDE + IA
    CASNLoss(ia=False, sa=True)    # IDE + SA
    CASNLoss(ia=True,  sa=True)    # CASN(IDE)

and the same flags with a PCB model give PCB, PCB+IA, PCB+SA and CASN(PCB) (the model's
``logits`` are then the stripes' summed scores; ``L_ide`` sums the stripes' losses).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from .attention import (
    INDICATORS,
    attention_profile,
    empty_maps,
    erase_attended,
    evaluation_mode,
    frozen_batchnorm_stats,
    grad_cam,
    indicator_vector,
    soft_mask,
    upsample,
)

__all__ = [
    "identification_loss", "attention_mining_loss", "siamese_bce_loss", "attention_distance",
    "siamese_attention_loss", "IAResult", "SAResult", "identification_attention", "SiameseHead",
    "siamese_attention", "warm_up_siamese_head", "CASNLoss", "CASNSettings", "IA_GRADIENTS",
    "Variant", "VARIANTS", "VERIFICATION_ARMS", "variant_name", "variant_names", "arm_names", "arm", "variant_loss",
]


# --------------------------------------------------------------------------- the loss terms
def identification_loss(logits: torch.Tensor, pids: torch.Tensor) -> torch.Tensor:
    """L_ide: softmax cross-entropy over the training identities. PCB's per-stripe scores
    [B, P, N] give the sum of the stripes' cross-entropies."""
    if logits.ndim == 3:
        return sum(F.cross_entropy(logits[:, j], pids) for j in range(logits.shape[1]))
    return F.cross_entropy(logits, pids)


def attention_mining_loss(masked_logits: torch.Tensor, pids: torch.Tensor,
                          score: str = "prob", valid: torch.Tensor | None = None) -> torch.Tensor:
    """L_ia: the true class's score on the masked image I*, averaged over the batch.

    Minimising it leaves nothing of the identity outside the attended region, so the
    attention has to cover all of the person. ``score="prob"`` (default) uses the softmax
    probability, bounded in [0, 1]; ``score="logit"`` the raw class score, as in GAIN's paper.

    ``valid`` ([B] booleans) marks the images whose attention map holds attention. An empty
    map erases nothing (T(M) = sigmoid(-omega sigma), about 0.007), so I* is the image
    itself and lowering p(c | I*) would fight L_ide directly: those images are left out of
    the mean (a batch without any valid image gives 0, with the graph kept).
    """
    if score == "prob":
        values = masked_logits.softmax(dim=1)
    elif score == "logit":
        values = masked_logits
    else:
        raise ValueError(f"unknown score {score!r}; choose 'prob' or 'logit'")
    true_class = values.gather(1, pids[:, None]).squeeze(1)
    if valid is None:
        return true_class.mean()
    valid = valid.bool()
    return true_class[valid].mean() if valid.any() else true_class.sum() * 0


def siamese_bce_loss(pair_logits: torch.Tensor, same: torch.Tensor) -> torch.Tensor:
    """L_bce: two-way softmax cross-entropy on same (1) / different (0) identity."""
    return F.cross_entropy(pair_logits, same.long())


def attention_distance(profile1: torch.Tensor, profile2: torch.Tensor) -> torch.Tensor:
    """||M*_m1 - M*_m2||_2 per pair ([B, L] -> [B])."""
    return torch.linalg.vector_norm(profile1 - profile2, dim=1)


def siamese_attention_loss(bce: torch.Tensor, distance: torch.Tensor, same: torch.Tensor,
                           consistency_weight: float = 0.2, negative_margin: float | None = None,
                           negative_weight: float = 0.2, valid: torch.Tensor | None = None,
                           ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """L_sa = L_bce + 0.2 mean_{positive pairs} ||M*_m1 - M*_m2||_2 [+ a hinge on negatives].

    ``valid`` ([B] booleans) marks the pairs whose two maps hold attention: a pair with an
    empty map has no profile to compare (and no gradient), so it is left out of both means.
    The hinge (off by default) asks negative pairs' profiles to differ by at least
    ``negative_margin``: mean_{negative pairs} max(0, margin - distance).
    """
    valid = torch.ones_like(same, dtype=torch.bool) if valid is None else valid.bool()
    positive = same.bool() & valid
    zero = distance.sum() * 0  # keeps the graph and dtype when a batch has no such pair
    consistency = distance[positive].mean() if positive.any() else zero
    loss = bce + consistency_weight * consistency
    parts = {"bce": bce, "consistency": consistency}
    if negative_margin is not None:
        negative = ~same.bool() & valid
        hinge = F.relu(negative_margin - distance[negative]).mean() if negative.any() else zero
        loss = loss + negative_weight * hinge
        parts["negative_hinge"] = hinge
    return loss, parts


# --------------------------------------------------------------------------- attention passes
IA_GRADIENTS = ("attention", "all")


@dataclass
class IAResult:
    attention: torch.Tensor  # M: Grad-CAM of the true class, [B, 1, h, w] in [0, 1]
    mask: torch.Tensor  # T(M) at image size, [B, 1, H, W]
    masked_images: torch.Tensor  # I* = I - T(M) * I
    masked_logits: torch.Tensor  # the network's identity scores on I*
    empty: torch.Tensor  # [B] booleans: maps with no attention at all


def score_without_training_it(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The model's identity scores on ``images`` as a fixed function of the images: weights
    taken as constants, evaluation mode. A loss on these scores reaches the network only
    through the images (for I*: through the mask, hence through the attention)."""
    frozen = {name: t.detach() for name, t in (*model.named_parameters(), *model.named_buffers())}
    with evaluation_mode(model):
        return functional_call(model, frozen, (images,)).logits


def identification_attention(model: nn.Module, images: torch.Tensor, pids: torch.Tensor,
                             sigma: float = 0.5, omega: float = 10.0, second_order: bool = False,
                             gradient: str = "all") -> IAResult:
    """IA: where the network looks for the true identity, and what it sees without it.

    The attention comes from a forward pass in evaluation mode (each image's own map; see
    ``casn_lite.attention``). ``gradient="all"`` (default; GAIN's and the paper's form): the
    masked pass is an ordinary training forward that L_ia also trains, so the network can
    lower L_ia by learning to score images with a hole low as well as by moving its
    attention; batch norm's running stats are left alone in that pass. ``"attention"``:
    the masked images are scored by the network taken as a fixed function, so L_ia can
    only be lowered by moving the attention (docs/attention_study.md compares the two)."""
    if gradient not in IA_GRADIENTS:
        raise ValueError(f"unknown gradient {gradient!r}; choose one of {', '.join(IA_GRADIENTS)}")
    with evaluation_mode(model):
        out = model(images)
    class_score = out.logits.gather(1, pids[:, None]).squeeze(1)  # s_c
    attention = grad_cam(class_score, out.feature_map, create_graph=second_order)  # M
    mask = soft_mask(upsample(attention, images.shape[-2:]), sigma, omega)  # T(M)
    masked = erase_attended(images, mask)  # I*
    if gradient == "attention":
        masked_logits = score_without_training_it(model, masked)
    else:
        with frozen_batchnorm_stats(model):
            masked_logits = model(masked).logits
    return IAResult(attention, mask, masked, masked_logits, empty_maps(attention))


@dataclass
class SAResult:
    pair_logits: torch.Tensor  # z = (z_diff, z_same), [B, 2]
    difference: torch.Tensor  # f_minus = f1 - f2, [B, D]
    indicator: torch.Tensor  # alpha, binary [B, D]
    attention1: torch.Tensor  # Grad-CAM of s_1 = <alpha, f1> on image 1, [B, 1, h, w]
    attention2: torch.Tensor
    profile1: torch.Tensor  # M_m: horizontal max of the attention at image height, [B, H]
    profile2: torch.Tensor
    cropped1: torch.Tensor  # M*_m: the profile's span above the threshold, resized, [B, L]
    cropped2: torch.Tensor
    empty1: torch.Tensor  # [B] booleans: image 1's map holds no attention
    empty2: torch.Tensor

    @property
    def valid(self) -> torch.Tensor:
        """Pairs whose two maps both hold attention: the ones a profile distance means something for."""
        return ~(self.empty1 | self.empty2)


def siamese_attention(model: nn.Module, head: nn.Module, images1: torch.Tensor,
                      images2: torch.Tensor, indicator: str = "margin",
                      second_order: bool = False, threshold: float | None = 0.2,
                      length: int = 32) -> SAResult:
    """SA: classify a pair as same/different, then ask where each image shows what made the
    pair look the same, as a profile over the image's rows.

    The pair is classified on the training-mode features (L_bce trains them); the scores
    s_i = <alpha, f_i> whose Grad-CAM gives the attention come from a forward pass in
    evaluation mode, so that each map is that image's own."""
    images = torch.cat([images1, images2])  # both sides in one batch
    f1, f2 = model(images).embedding.chunk(2)
    difference = f1 - f2  # f_minus
    pair_logits = head(difference)  # z = (z_diff, z_same)
    alpha = indicator_vector(pair_logits, difference, indicator)
    with evaluation_mode(model):
        out = model(images)
    g1, g2 = out.embedding.chunk(2)  # f_i, each image on its own
    scores = torch.cat([(alpha * g1).sum(1), (alpha * g2).sum(1)])  # s_i = <alpha, f_i>
    attention = grad_cam(scores, out.feature_map, create_graph=second_order)
    profile, cropped = attention_profile(attention, images1.shape[-2:], threshold, length)  # M_m, M*_m
    a1, a2 = attention.chunk(2)
    p1, p2 = profile.chunk(2)
    c1, c2 = cropped.chunk(2)
    return SAResult(pair_logits, difference, alpha, a1, a2, p1, p2, c1, c2,
                    empty_maps(a1), empty_maps(a2))


class SiameseHead(nn.Module):
    """CASN's same/different classifier on a pair's feature difference f_minus = f1 - f2:
    FC -> ReLU -> FC to two logits z = (z_diff, z_same). ``CASNLoss`` owns it: makes it (SA
    variants only), resets it (``reset_head``), warms it up (``warm_up_head``), and ``fit``
    trains it through the loss step with the model."""

    def __init__(self, feature_dim: int = 512, hidden_dim: int = 512):
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(feature_dim, hidden_dim), nn.ReLU(inplace=True),
                                    nn.Linear(hidden_dim, 2))

    def forward(self, difference: torch.Tensor) -> torch.Tensor:
        return self.layers(difference)


def warm_up_siamese_head(head: nn.Module, model: nn.Module, pair_batches, device: torch.device,
                         steps: int = 100, lr: float = 1e-3) -> list[float]:
    """Train the Siamese head alone on the current model's pair differences (features in
    evaluation mode, no gradient into the model), so that its indicator alpha means something
    before L_sa reaches the trunk. A fresh head says "same" at chance (L_bce = ln 2), and its
    alpha is then an arbitrary half of the dimensions. Returns L_bce after each step."""
    optimizer = torch.optim.Adam(head.parameters(), lr=lr)
    head.train()
    losses: list[float] = []
    batches = iter(pair_batches)
    while len(losses) < steps:
        try:
            batch = next(batches)
        except StopIteration:  # the pair loader ran out: start it again
            batches = iter(pair_batches)
            batch = next(batches)
        with torch.no_grad(), evaluation_mode(model):
            f = model(torch.cat([batch["image1"], batch["image2"]]).to(device)).embedding
        f1, f2 = f.chunk(2)
        loss = siamese_bce_loss(head(f1 - f2), batch["same"].to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


# --------------------------------------------------------------------------- one loss for all variants
@dataclass(frozen=True)
class CASNSettings:
    """How CASN's loss terms behave, one field per knob; the defaults are the paper's form.

    Pass it to ``CASNLoss(settings=...)`` or ``variant_loss(name, settings=...)``, built by
    keyword (``CASNSettings(lambda_ia=0.5, ramp_epochs=1.0)``) or picked from a notebook's
    parameters (``CASNSettings.from_parameters(globals())``). ``replace(settings, ...)``
    (``dataclasses.replace``) changes one knob and keeps the others.
    """

    lambda_ia: float = 1.0  # lambda_1, the weight of L_ia
    lambda_sa: float = 1.0  # lambda_2, the weight of L_sa
    ramp_epochs: float = 0.0  # lambda_1 and lambda_2 grow from 0 over this many epochs (0: no ramp)
    sigma: float = 0.5  # sigma of the soft mask T(M) = sigmoid(omega (M - sigma))
    omega: float = 10.0  # omega of T(M)
    ia_score: str = "prob"  # L_ia on the true class's probability ("prob") or raw score ("logit")
    ia_gradient: str = "all"  # "all": L_ia trains the whole network; "attention": only through M
    second_order: bool = False  # Grad-CAM's channel weights w_k differentiated too
    indicator: str = "margin"  # alpha from d (z_same - z_diff) / d f_minus; "same_logit", "difference": attention.INDICATORS
    profile_threshold: float | None = 0.2  # M*_m keeps the rows above this share of the profile's maximum
    profile_length: int = 32  # M*_m is stretched to this many values
    consistency_weight: float = 0.2  # the 0.2 in L_sa = L_bce + 0.2 ||M*_m1 - M*_m2||_2
    negative_margin: float | None = None  # a hinge on negative pairs' profile distance (None: off)
    negative_weight: float = 0.2  # its weight

    def __post_init__(self):
        if self.ia_gradient not in IA_GRADIENTS:
            raise ValueError(f"unknown ia_gradient {self.ia_gradient!r}; choose one of {', '.join(IA_GRADIENTS)}")
        if self.ramp_epochs < 0:
            raise ValueError(f"ramp_epochs must be >= 0, got {self.ramp_epochs}")
        if self.indicator not in INDICATORS:
            raise ValueError(f"unknown indicator {self.indicator!r}; choose one of {', '.join(INDICATORS)}")

    @classmethod
    def from_parameters(cls, parameters: Mapping[str, object]) -> CASNSettings:
        """The settings named in ``parameters`` (a notebook's ``globals()``); missing ones
        keep their defaults, other names are left alone, except one that looks like a
        misspelt knob (``lamda_ia``, ``profile_treshold``): that is an error, since the knob
        it meant would silently keep its default."""
        knobs = [f.name for f in fields(cls)]
        for name in parameters:
            if name in knobs or name.startswith("_"):
                continue
            near = difflib.get_close_matches(name, knobs, n=1, cutoff=0.85)
            if near and near[0] not in parameters:
                raise ValueError(f"{name!r} is not a CASN setting; did you mean {near[0]!r}? "
                                 f"The settings are: {', '.join(knobs)}")
        return cls(**{name: parameters[name] for name in knobs if name in parameters})


class CASNLoss(nn.Module):
    """L = L_ide + lambda_ia L_ia + lambda_sa L_sa, each term behind a flag.

    Call it as the engine does, ``loss, terms = casn(model, batch, device, progress)``. The batch holds
    an identity batch (``image``, ``pid``) and, when ``sa`` is on, a pair batch (``image1``,
    ``image2``, ``same``); ``casn_lite.engine.JointLoader`` zips the two. It is a module
    because the Siamese head has weights: ``fit`` trains and checkpoints them with the model.

    Its knobs are a ``CASNSettings`` (``settings=``); each can also be passed by name
    (``CASNLoss(ia=True, sa=False, lambda_ia=0.5)``), over ``settings``. ``feature_dim`` and
    ``hidden_dim`` size the Siamese head. Options beyond the paper's equation (the defaults
    are the paper's form: ``ia_gradient="all"``, ``ramp_epochs=0``, no head warm-up):

    * ``ia_gradient="attention"``: L_ia moves the attention only (see
      ``identification_attention``). In the attention study the paper's form gave IDE+IA
      its retrieval gain without moving the attention, and this one neither (see
      docs/attention_study.md);
    * ``ramp_epochs``: lambda_ia and lambda_sa grow linearly from 0 to their values over
      this many epochs (``fit`` passes the progress, in epochs, to every call), so the
      attention terms start on features that L_ide shaped;
    * ``warm_up_head``: trains the Siamese head alone before the attention terms start.
    """

    def __init__(self, ia: bool = True, sa: bool = True, *, arch: str = "ide", feature_dim: int = 512,
                 hidden_dim: int = 512, settings: CASNSettings | None = None, **options):
        super().__init__()
        unknown = set(options) - {f.name for f in fields(CASNSettings)}
        if unknown:
            raise TypeError(f"CASNLoss got unknown options {', '.join(sorted(unknown))}; "
                            f"the settings are: {', '.join(f.name for f in fields(CASNSettings))}")
        self.ia, self.sa, self.arch = ia, sa, arch
        self.settings = replace(settings or CASNSettings(), **options)
        self.head = SiameseHead(feature_dim, hidden_dim) if sa else None

    @property
    def variant(self) -> str:
        """The paper's name for this combination, e.g. "IDE+SA" or "CASN(PCB)"."""
        return variant_name(self.arch, self.ia, self.sa)

    def ramp(self, progress: float) -> float:
        """The factor on lambda_ia and lambda_sa after ``progress`` epochs: 0 -> 1 over ``ramp_epochs``."""
        ramp_epochs = self.settings.ramp_epochs
        return 1.0 if ramp_epochs <= 0 else min(1.0, progress / ramp_epochs)

    def reset_head(self) -> None:
        """Draw the Siamese head's weights afresh from torch's generator (seed it first): a
        variant trained from a seed starts from the same head whatever ran before."""
        for layer in self.head.modules() if self.head is not None else ():
            if hasattr(layer, "reset_parameters"):
                layer.reset_parameters()

    def warm_up_head(self, model: nn.Module, pair_batches, device: torch.device, steps: int = 100,
                     lr: float = 1e-3) -> list[float]:
        """Train the Siamese head alone on ``model``'s current features (``warm_up_siamese_head``)."""
        if self.head is None:
            return []
        self.head.to(device)
        return warm_up_siamese_head(self.head, model, pair_batches, device, steps, lr)

    def forward(self, model: nn.Module, batch: dict, device: torch.device, progress: float = 0.0
                ) -> tuple[torch.Tensor, dict[str, float]]:
        images = batch["image"].to(device, non_blocking=True)
        pids = batch["pid"].to(device, non_blocking=True)
        out = model(images)
        loss = identification_loss(out.identity_logits, pids)  # L_ide
        terms = {"ide": loss.detach()}
        ramp, s = self.ramp(progress), self.settings
        if self.ia:
            ia = identification_attention(model, images, pids, s.sigma, s.omega, s.second_order,
                                          gradient=s.ia_gradient)
            l_ia = attention_mining_loss(ia.masked_logits, pids, s.ia_score, valid=~ia.empty)
            loss = loss + ramp * s.lambda_ia * l_ia
            terms["ia"] = l_ia.detach()
            terms["ia_empty"] = ia.empty.float().mean()  # the share of images L_ia left out
        if self.sa:
            if "image1" not in batch:
                raise KeyError("CASNLoss(sa=True) needs pair batches (image1, image2, same): "
                               "train on a JointLoader(identity_loader, pair_loader)")
            same = batch["same"].to(device, non_blocking=True)
            sa = siamese_attention(model, self.head, batch["image1"].to(device, non_blocking=True),
                                   batch["image2"].to(device, non_blocking=True), s.indicator,
                                   s.second_order, s.profile_threshold, s.profile_length)
            l_sa, parts = siamese_attention_loss(
                siamese_bce_loss(sa.pair_logits, same), attention_distance(sa.cropped1, sa.cropped2),
                same, s.consistency_weight, s.negative_margin, s.negative_weight, sa.valid)
            loss = loss + ramp * s.lambda_sa * l_sa
            terms["sa"] = l_sa.detach()
            terms.update({k: v.detach() for k, v in parts.items()})
            terms["sa_empty"] = (~sa.valid).float().mean()
        values = torch.stack([v.float() for v in terms.values()]).tolist()  # one device sync
        return loss, dict(zip(terms, values, strict=True))


# --------------------------------------------------------------------------- the paper's variants
class Variant(NamedTuple):
    arch: str  # "ide" or "pcb" (casn_lite.models.ARCHS)
    ia: bool  # L_ia on
    sa: bool  # L_sa on


# the paper's names, in its Table 3's order: the one list every table, command and study uses
VARIANTS = {"IDE": Variant("ide", False, False), "IDE+IA": Variant("ide", True, False),
            "IDE+SA": Variant("ide", False, True), "CASN(IDE)": Variant("ide", True, True),
            "PCB": Variant("pcb", False, False), "PCB+IA": Variant("pcb", True, False),
            "PCB+SA": Variant("pcb", False, True), "CASN(PCB)": Variant("pcb", True, True)}


def variant_name(arch: str, ia: bool, sa: bool) -> str:
    """The paper's name of an architecture with these terms, e.g. ("ide", True, True) -> "CASN(IDE)"."""
    return next(name for name, variant in VARIANTS.items() if variant == (arch, ia, sa))


# The verification arms: the SA variant with L_sa's consistency term off (consistency weight
# 0: the Siamese head's L_bce alone, the same head and warm-up). Against the SA variant, they
# tell a gain of the verification loss from one of attention consistency.
VERIFICATION_ARMS = {"IDE+SA(0)": "IDE+SA", "PCB+SA(0)": "PCB+SA"}


def variant_names(arch: str = "ide") -> list[str]:
    """The four variants of one architecture, in the paper's order."""
    return [name for name, variant in VARIANTS.items() if variant.arch == arch]


def arm_names(arch: str = "ide") -> list[str]:
    """What notebook 05 and the attention study compare: the paper's four variants of
    ``arch`` with the verification arm before the SA variant, e.g. IDE, IDE+IA, IDE+SA(0),
    IDE+SA, CASN(IDE)."""
    names = variant_names(arch)
    sa = names.index(variant_name(arch, False, True))
    return [*names[:sa], f"{names[sa]}(0)", *names[sa:]]


def arm(name: str) -> Variant:
    """The architecture and terms of a variant or verification arm."""
    return VARIANTS[VERIFICATION_ARMS.get(name, name)]


def variant_loss(name: str, **options) -> CASNLoss:
    """The ``CASNLoss`` of a variant by its paper name, or of a verification arm (its SA
    variant with consistency weight 0); ``options`` are CASNLoss's keywords (``feature_dim``,
    ``hidden_dim``, ``settings=CASNSettings(...)``, or a setting by name)."""
    if name in VERIFICATION_ARMS:
        return variant_loss(VERIFICATION_ARMS[name], **{**options, "consistency_weight": 0.0})
    if name not in VARIANTS:
        raise ValueError(f"unknown variant {name!r}; choose from {', '.join([*VARIANTS, *VERIFICATION_ARMS])}")
    arch, ia, sa = VARIANTS[name]
    return CASNLoss(ia=ia, sa=sa, arch=arch, **options)
