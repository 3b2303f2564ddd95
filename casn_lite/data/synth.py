"""SynthPeople: a generated person re-identification dataset in Market-1501 layout.

Each image shows one pedestrian drawn from simple shapes (head, hair, torso,
arms, legs, shoes, plus *identity cues*: a chest emblem, a bag, a stripe pattern)
over a camera-specific background. What makes it a re-ID problem rather than a
colour lookup:

* identities come in *look-alike families*: the members of a family share every
  coarse attribute (clothes, hair, skin, shoes, build) and differ only in their
  small identity cues;
* cameras differ in background, illumination gain and colour cast, blur, noise,
  the viewpoints they see (a chest emblem is hidden from behind, a backpack shows
  from behind), detector-box jitter, occluders (a pole, a car) and now and then
  part of a second person at the image edge.

``SynthConfig(control=True)`` draws the *positive control*: the same people and
cameras plus shortcuts built in by construction, each aimed at the failure one of
CASN's terms is meant to fix (``docs/positive_control.md``):

* a *name tag* (three coloured stripes at the belt, one code per identity) shown on
  every training image but on only a quarter of the test images: a network that
  identifies people by the tag alone has nothing to match across views (IA's target,
  attention on one small part);
* each camera shifts and scales the person vertically, and shows a *camera sign* (a
  patch of the camera's own colour on the background, at a random height): attention
  that moves with the camera, not the person (SA's target, inconsistent attention).

``SynthConfig(decoy=True)`` (version 3 of the control, on its own or with the above) adds a
*decoy*: a badge of three coloured stripes, one code per identity, on the background at
the box's edge at a random height, in half of the images. In training it repeats the
person's own code, so it identifies them; in the test splits it shows another test
person's code, so a network that relies on it is misled. It sits at a different height in
each view: evidence that looks the same in two views but lies in different places
(attention consistency's target, SA).

Drawing is vectorised over a batch: every pixel gets a part label (uint8) by
broadcasting comparisons on person coordinates, and one gather turns labels into
colours. The same labels give the mask (0 background, 1 person, 2 identity cue; in the
positive control also 3 name tag, on the person, and 4 camera sign, on the background; 5
the decoy, on the background).
Everything is drawn from ``numpy.random.SeedSequence(seed)``, so the same seed
and settings give byte-identical files.

Output (``root`` is the folder you pass)::

    root/bounding_box_train/0002_c1s1_000015_00.jpg   training images
    root/query/...                                      one image per test identity and camera
    root/bounding_box_test/...                          the rest, plus distractors (0000) and junk (-1)
    root/masks/<same split>/<same name>.png             0 background, 1 person, 2 identity cue (3 tag, 4 sign, 5 decoy)
    root/meta.json                                      generator version, settings, identities, images

A set is drawn into a hidden folder beside ``root`` and moved into place only when complete,
``meta.json`` last (it is the completeness marker: the loaders check that the files it lists
are all there). An interrupted run leaves the previous set, if any, as it was.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..progress import progress_bar

__all__ = [
    "GENERATOR_VERSION",
    "incomplete",
    "check_memory",
    "PRESETS",
    "SynthConfig",
    "generate",
    "ensure_synthpeople",
    "render_batch",
    "MASK_BACKGROUND",
    "MASK_PERSON",
    "MASK_CUE",
    "MASK_TAG",
    "MASK_SIGN",
    "MASK_DECOY",
    "PERSON_MASK_VALUES",
]

GENERATOR_VERSION = "1.0"
MASK_BACKGROUND, MASK_PERSON, MASK_CUE = 0, 1, 2
MASK_TAG, MASK_SIGN = 3, 4  # the positive control's name tag (on the person) and camera sign
MASK_DECOY = 5  # version 3's decoy (on the background)
PERSON_MASK_VALUES = (MASK_PERSON, MASK_CUE, MASK_TAG)  # the mask values that are the person
SPLITS = ("bounding_box_train", "query", "bounding_box_test")  # the Market-1501 layout's folders
_BATCH = 256  # images drawn at once; fixed so that output never depends on it

# --------------------------------------------------------------------------- palettes
# (name, RGB). Small palettes on purpose: coarse attributes must collide.
UPPER = [("black", (32, 32, 36)), ("white", (222, 222, 216)), ("grey", (128, 128, 132)),
         ("navy", (34, 44, 92)), ("blue", (52, 94, 172)), ("red", (168, 38, 38)),
         ("green", (44, 112, 64)), ("beige", (198, 178, 138)), ("maroon", (112, 32, 48)),
         ("yellow", (206, 178, 56))]
LOWER = [("black", (30, 30, 34)), ("denim", (54, 74, 112)), ("grey", (102, 102, 108)),
         ("khaki", (168, 150, 112)), ("brown", (100, 72, 48)), ("white", (214, 214, 208))]
HAIR = [("black", (26, 22, 22)), ("brown", (74, 48, 32)), ("blonde", (190, 160, 102)),
        ("grey", (152, 152, 152))]
SKIN = [("light", (232, 192, 162)), ("medium", (192, 142, 106)), ("dark", (122, 86, 62))]
SHOES = [("black", (26, 26, 26)), ("white", (232, 232, 232)), ("brown", (92, 62, 42)),
         ("grey", (122, 122, 122))]
CUE = [("red", (224, 42, 42)), ("yellow", (242, 212, 42)), ("white", (246, 246, 246)),
       ("cyan", (42, 200, 212)), ("orange", (242, 132, 32)), ("magenta", (202, 52, 172)),
       ("green", (62, 192, 72)), ("blue", (42, 82, 222))]
LOWER_STYLES = ["trousers", "shorts", "skirt"]
HAIR_STYLES = ["short", "long"]
BUILDS = [("slim", 0.86), ("regular", 1.0), ("broad", 1.14)]
EMBLEMS = ["none", "circle", "square", "triangle", "diamond"]
BAGS = ["none", "backpack", "shoulder bag", "handbag"]
PATTERNS = ["none", "chest band", "pinstripes", "striped sleeves"]
VIEWS = ["front", "back", "side"]
BACKGROUNDS = ["street", "indoor", "park", "plaza"]
OCCLUDERS = ["none", "pole", "car"]

# Part labels painted per pixel. The second person at the image edge uses the same
# parts shifted by _SECOND; occluders come last.
BG, SKIN_P, HAIR_P, UPPER_P, LOWER_P, SHOES_P, EMBLEM_P, BAG_P, PATTERN_P, SLEEVE_P = range(10)
_SECOND = 10
POLE_P, CAR_P, WINDOW_P = 20, 21, 22
TAG_P = (23, 24, 25)  # the positive control's name tag: three stripes, top to bottom
SIGN_P = 26  # the positive control's camera sign
DECOY_P = (27, 28, 29)  # version 3's decoy: three stripes, top to bottom
_NUM_PARTS = 30
_MASK_OF_PART = np.zeros(_NUM_PARTS, np.uint8)
_MASK_OF_PART[[SKIN_P, HAIR_P, UPPER_P, LOWER_P, SHOES_P, SLEEVE_P]] = MASK_PERSON
_MASK_OF_PART[[EMBLEM_P, BAG_P, PATTERN_P]] = MASK_CUE
_MASK_OF_PART[list(TAG_P)] = MASK_TAG
_MASK_OF_PART[SIGN_P] = MASK_SIGN
_MASK_OF_PART[list(DECOY_P)] = MASK_DECOY

# the positive control (SynthConfig.control)
TAG_SHOWN = {"bounding_box_train": 1.0, "query": 0.25, "bounding_box_test": 0.25}  # P(tag visible)
SIGN_SHOWN = 0.8  # P(the camera sign is in the box), every split
TAG_MOVES = (-0.2, 0.3)  # version 4 (SynthConfig.tag_moves): the tag's offset from the belt, range
DECOY_SHOWN = 0.5  # P(the decoy is in the box), every split (version 3, SynthConfig.decoy)


def _rgb(palette: list) -> np.ndarray:
    return np.array([c for _, c in palette], np.float32)


# --------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class SynthConfig:
    """Size and shape of a generated set. ``None`` counts are derived from the gallery size."""

    train_ids: int = 128
    test_ids: int = 128
    cameras: int = 6
    images_per_camera: int = 4  # images of one identity in one camera it visits
    height: int = 128
    width: int = 64
    family_size: int = 3  # identities that share all coarse attributes
    distractors: int | None = None  # pid 0000 gallery images; default 5 % of the gallery
    junk: int | None = None  # pid -1 gallery images (bad detections); default 3 % of the gallery
    seed: int = 0
    control: bool = False  # the positive control: a name tag and camera signs and geometry built in
    tag_scale: float = 1.0  # the control's name tag: its height and width times this, about its centre
    decoy: bool = False  # version 3 of the control: an identity badge on the background, misleading at test
    tag_moves: bool = False  # version 4: the control's name tag at a random height on the body in each image

    def __post_init__(self) -> None:
        if self.train_ids < 1 or self.test_ids < 1:
            raise ValueError("train_ids and test_ids must be at least 1")
        if not 2 <= self.cameras <= 9:
            raise ValueError("cameras must be between 2 and 9 (Market-1501 file names hold one digit)")
        if self.images_per_camera < 2:
            raise ValueError("images_per_camera must be at least 2 (one query plus gallery images)")
        if self.height < 32 or self.width < 16:
            raise ValueError("images must be at least 32 x 16 pixels")
        if self.train_ids + self.test_ids > 9998:
            raise ValueError("at most 9998 identities fit 4-digit Market-1501 pids")
        if not 0 <= self.seed < 2**63:
            raise ValueError(f"seed must be a whole number from 0 to 2**63 - 1, got {self.seed}")
        for name in ("distractors", "junk"):
            if (getattr(self, name) or 0) < 0:
                raise ValueError(f"{name} must not be negative")
        if not 0.5 <= self.tag_scale <= 4:
            raise ValueError(f"tag_scale must be between 0.5 and 4, got {self.tag_scale}")
        if self.tag_scale != 1.0 and not self.control:
            raise ValueError("tag_scale sizes the positive control's name tag: set control too")
        if self.tag_moves and not self.control:
            raise ValueError("tag_moves moves the positive control's name tag: set control too")


PRESETS = {
    # a few thousand images: what the notebooks' fast defaults use
    "small": SynthConfig(),
    # Market-1501 scale: ~750 train and ~750 test identities, ~30,000 images
    "market": SynthConfig(train_ids=751, test_ids=750, images_per_camera=5),
}


# --------------------------------------------------------------------------- identities
def _contrasting(rng: np.random.Generator, palette: np.ndarray, against: np.ndarray, min_dist: float) -> int:
    """Index of a random palette colour at least ``min_dist`` away from ``against``."""
    ok = np.flatnonzero(np.linalg.norm(palette - against, axis=1) >= min_dist)
    return int(rng.choice(ok))


def _draw_family(rng: np.random.Generator) -> dict:
    """Coarse attributes shared by every member of a look-alike family."""
    return {
        "upper": int(rng.integers(len(UPPER))),
        "lower": int(rng.integers(len(LOWER))),
        "lower_style": int(rng.choice(3, p=[0.7, 0.15, 0.15])),
        "hair": int(rng.integers(len(HAIR))),
        "hair_style": int(rng.integers(2)),
        "skin": int(rng.integers(len(SKIN))),
        "shoes": int(rng.integers(len(SHOES))),
        "build": int(rng.integers(len(BUILDS))),
        "height": float(np.round(rng.uniform(0.92, 1.04), 3)),
    }


def _draw_cues(rng: np.random.Generator, upper: int) -> dict:
    """Small identity cues; every person has at least one."""
    while True:
        emblem = int(rng.choice(5, p=[0.25, 0.1875, 0.1875, 0.1875, 0.1875]))
        bag = int(rng.choice(4, p=[0.3, 0.25, 0.25, 0.2]))
        pattern = int(rng.choice(4, p=[0.4, 0.2, 0.2, 0.2]))
        if emblem or bag or pattern:
            break
    cue_rgb, up_rgb = _rgb(CUE), _rgb(UPPER)[upper]
    return {
        "emblem": emblem,
        "emblem_colour": _contrasting(rng, cue_rgb, up_rgb, 110.0),
        "bag": bag,
        "bag_colour": int(rng.integers(len(CUE))),
        "pattern": pattern,
        "pattern_colour": _contrasting(rng, cue_rgb, up_rgb, 110.0),
    }


def _cue_signature(c: dict) -> tuple:
    """What a person's cues look like, part by part (absent parts have no colour)."""
    return (
        (c["emblem"], c["emblem_colour"] if c["emblem"] else -1),
        (c["bag"], c["bag_colour"] if c["bag"] else -1),
        (c["pattern"], c["pattern_colour"] if c["pattern"] else -1),
    )


def _draw_identities(rng: np.random.Generator, count: int, family_size: int, first_family: int) -> list[dict]:
    """``count`` identities in families whose members differ in at least two cue parts."""
    people: list[dict] = []
    family_id = first_family
    while len(people) < count:
        coarse = _draw_family(rng)
        members: list[dict] = []
        for _ in range(min(family_size, count - len(people))):
            for _attempt in range(1000):
                cues = _draw_cues(rng, coarse["upper"])
                sig = _cue_signature(cues)
                if all(sum(a != b for a, b in zip(sig, _cue_signature(m), strict=True)) >= 2 for m in members):
                    break
            else:
                raise ValueError(f"cannot make {family_size} look-alikes that differ in two cues; use fewer")
            members.append({**coarse, **cues, "family": family_id})
        people.extend(members)
        family_id += 1
    return people


def _identity_names(p: dict) -> dict:
    """Human-readable attributes of one identity, for meta.json."""
    return {
        "family": p["family"],
        "upper": UPPER[p["upper"]][0], "lower": LOWER[p["lower"]][0],
        "lower_style": LOWER_STYLES[p["lower_style"]], "hair": HAIR[p["hair"]][0],
        "hair_style": HAIR_STYLES[p["hair_style"]], "skin": SKIN[p["skin"]][0],
        "shoes": SHOES[p["shoes"]][0], "build": BUILDS[p["build"]][0], "height": p["height"],
        "emblem": EMBLEMS[p["emblem"]], "emblem_colour": CUE[p["emblem_colour"]][0] if p["emblem"] else None,
        "bag": BAGS[p["bag"]], "bag_colour": CUE[p["bag_colour"]][0] if p["bag"] else None,
        "pattern": PATTERNS[p["pattern"]],
        "pattern_colour": CUE[p["pattern_colour"]][0] if p["pattern"] else None,
    }


# --------------------------------------------------------------------------- cameras
def _draw_cameras(rng: np.random.Generator, count: int) -> list[dict]:
    """Per-camera look: background, palette, light, optics, viewpoints, occluders."""
    cams = []
    for c in range(count):
        favoured = np.full(3, 0.2)
        favoured[c % 3] = 0.6
        cams.append({
            "background": BACKGROUNDS[c % len(BACKGROUNDS)],
            "palette": (rng.uniform(70, 200, size=(3, 1)) * (1 + rng.uniform(-0.2, 0.2, size=(3, 3))))
            .round().tolist(),
            "horizon": float(np.round(rng.uniform(0.55, 0.75), 3)),
            "gain": float(np.round(rng.uniform(0.72, 1.25), 3)),
            "cast": rng.uniform(0.84, 1.16, size=3).round(3).tolist(),
            "blur": int(rng.integers(0, 3)),  # passes of a [1 2 1]/4 filter
            "noise": float(np.round(rng.uniform(2.0, 9.0), 2)),
            "view_probs": (favoured / favoured.sum()).round(3).tolist(),
            "box_jitter": float(np.round(rng.uniform(0.02, 0.06), 3)),
            "scale": float(np.round(rng.uniform(0.78, 0.92), 3)),
            "occluder_prob": float(np.round(rng.uniform(0.0, 0.3), 3)),
            "second_person_prob": float(np.round(rng.uniform(0.03, 0.15), 3)),
        })
    return cams


# --------------------------------------------------------------------------- the positive control
def _draw_codes(rng: np.random.Generator, people: list, key: str) -> None:
    """A code of three stripe colours (indices into CUE) per identity, stored as ``key``
    (in place): distinct codes while there are enough."""
    codes = len(CUE) ** 3
    drawn = rng.choice(codes, size=len(people), replace=len(people) > codes)
    for p, code in zip(people, drawn, strict=True):
        p[key] = [int(code) // len(CUE) ** k % len(CUE) for k in range(3)]


def _draw_control(rng: np.random.Generator, people: list, cams: list) -> None:
    """The positive control's shortcuts (in place): a name-tag code per identity, and per
    camera a vertical shift and scale of the person and the colour of its sign."""
    _draw_codes(rng, people, "tag")
    sign_colours = rng.permutation(len(CUE))
    for c, cam in enumerate(cams):
        cam["control_shift"] = float(np.round(rng.uniform(-0.1, 0.1), 3))  # of the image height
        cam["control_scale"] = float(np.round(rng.uniform(0.82, 1.06), 3))
        cam["sign_colour"] = int(sign_colours[c % len(CUE)])


def _control_params(rng: np.random.Generator, split: str, cams: list, params: dict[str, np.ndarray],
                    H: int) -> dict[str, np.ndarray]:
    """Per image: the camera's geometry applied to the box, whether the tag and the sign
    show, and where the sign is."""
    cam = params["cam"]
    n = len(cam)
    shift = np.array([cams[c]["control_shift"] for c in cam], np.float32)
    scale = np.array([cams[c]["control_scale"] for c in cam], np.float32)
    ph = params["ph"] * scale
    top = params["top"] + (params["ph"] - ph) / 2 + shift * H  # scaled about the box's middle, then shifted
    return {
        "ph": ph.astype(np.float32), "top": top.astype(np.float32),
        "tag_shown": rng.random(n) < TAG_SHOWN[split],
        "sign_shown": rng.random(n) < SIGN_SHOWN,
        "sign_y": rng.uniform(0.05, 0.85, n).astype(np.float32),  # top of the sign, share of the height
        "sign_side": rng.choice([-1.0, 1.0], n).astype(np.float32),
    }


def _decoy_params(rng: np.random.Generator, split: str, person: np.ndarray,
                  split_people: np.ndarray) -> dict[str, np.ndarray]:
    """Per image: whether the decoy shows, where, and whose code it shows: the person's own
    in training, another test person's in the test splits (distractors and junk too)."""
    n = len(person)
    if split == "bounding_box_train":
        whose = person.copy()
    elif len(split_people) == 1:  # no other test person to show
        whose = np.full(n, split_people[0])
    else:  # a random test identity other than the one in the image (split_people is a sorted range)
        own = np.searchsorted(split_people, person)  # past the end for distractors: any test person
        pick = rng.integers(0, np.where(own < len(split_people), len(split_people) - 1, len(split_people)))
        whose = split_people[np.where(pick >= own, pick + 1, pick)]
    return {
        "decoy_shown": rng.random(n) < DECOY_SHOWN,
        "decoy_of": whose.astype(np.int64),
        "decoy_y": rng.uniform(0.05, 0.8, n).astype(np.float32),  # top of the badge, share of the height
        "decoy_side": rng.choice([-1.0, 1.0], n).astype(np.float32),
    }


# --------------------------------------------------------------------------- image plan
def _split_plan(rng: np.random.Generator, cfg: SynthConfig) -> dict[str, list[tuple[int, int]]]:
    """(identity index, camera) per image, for each split. Identity indices: train, test, distractors."""
    def visits(person: int) -> list[tuple[int, int]]:
        k = int(rng.integers(2, cfg.cameras + 1))
        cams = np.sort(rng.choice(cfg.cameras, size=k, replace=False))
        return [(person, int(c)) for c in cams for _ in range(cfg.images_per_camera)]

    train = [v for p in range(cfg.train_ids) for v in visits(p)]
    query, gallery = [], []
    for p in range(cfg.train_ids, cfg.train_ids + cfg.test_ids):
        shots = visits(p)
        for cam in sorted({c for _, c in shots}):
            same_cam = [s for s in shots if s[1] == cam]
            query.append(same_cam[0])
            gallery.extend(same_cam[1:])
    n_distract = cfg.distractors if cfg.distractors is not None else round(0.05 * len(gallery))
    n_junk = cfg.junk if cfg.junk is not None else round(0.03 * len(gallery))
    first_distractor = cfg.train_ids + cfg.test_ids
    gallery += [(first_distractor + i, int(rng.integers(cfg.cameras))) for i in range(n_distract)]
    # junk re-uses test identities: a bad detection of a real person
    junk_people = rng.integers(cfg.train_ids, cfg.train_ids + cfg.test_ids, size=n_junk)
    gallery += [(-1 - int(p), int(rng.integers(cfg.cameras))) for p in junk_people]
    return {"bounding_box_train": train, "query": query, "bounding_box_test": gallery}


def _image_params(rng: np.random.Generator, shots: list, people: list, cams: list,
                  cfg: SynthConfig, split_people: np.ndarray) -> dict[str, np.ndarray]:
    """Everything random about each image, drawn up front (struct of arrays)."""
    n = len(shots)
    person = np.array([p if p >= 0 else -1 - p for p, _ in shots], np.int64)
    junk = np.array([p < 0 for p, _ in shots])
    cam = np.array([c for _, c in shots], np.int64)
    H, W = cfg.height, cfg.width
    cam_of = lambda key: np.array([cams[c][key] for c in cam], np.float32)  # noqa: E731

    view_probs = np.array([cams[c]["view_probs"] for c in cam])
    view = (rng.random(n)[:, None] > np.cumsum(view_probs, 1)).sum(1)
    facing = np.where(view == 1, -1.0, np.where(view == 0, 1.0, rng.choice([-1.0, 1.0], n)))
    height = np.array([people[p]["height"] for p in person], np.float32)
    jitter = cam_of("box_jitter")
    ph = H * cam_of("scale") * height * rng.uniform(0.93, 1.07, n)
    top = (H - ph) / 2 + rng.normal(0, 1, n) * jitter * H
    cx = W / 2 + rng.normal(0, 1, n) * jitter * W * 1.5
    # junk: a detector box far too large or off-centre, showing a fragment of a person
    zoom = rng.uniform(1.6, 2.6, n)
    ph = np.where(junk, ph * zoom, ph)
    top = np.where(junk, -rng.uniform(0.1, 0.55, n) * ph, top)
    cx = np.where(junk, W * rng.uniform(-0.1, 1.1, n), cx)

    occluder = np.where(rng.random(n) < cam_of("occluder_prob"), rng.integers(1, 3, n), 0)
    second = rng.random(n) < cam_of("second_person_prob")
    return {
        "person": person, "cam": cam, "view": view, "facing": facing.astype(np.float32),
        "ph": ph.astype(np.float32), "top": top.astype(np.float32), "cx": cx.astype(np.float32),
        "junk": junk, "occluder": occluder,
        "occ_pos": rng.uniform(0.05, 0.95, n).astype(np.float32),
        "occ_size": rng.uniform(0.0, 1.0, n).astype(np.float32),
        "occ_colour": rng.uniform(40, 220, (n, 3)).astype(np.float32),
        "second": np.where(second, rng.choice(split_people, n), -1),
        "second_side": rng.choice([-1.0, 1.0], n).astype(np.float32),
        "second_scale": rng.uniform(0.9, 1.08, n).astype(np.float32),
        "bg_shift": rng.uniform(0, 1, (n, 2)).astype(np.float32),  # where the box sits in the scene
        "light": rng.uniform(0.9, 1.1, n).astype(np.float32),
        "shade": rng.uniform(0.9, 1.1, (n, 3)).astype(np.float32),  # cloth colour wobble
    }


# --------------------------------------------------------------------------- drawing
def _attr(people: list, idx: np.ndarray, key: str, dtype=np.int64) -> np.ndarray:
    """One attribute for a batch of identity indices, shaped [B, 1, 1] for broadcasting."""
    return np.array([people[i][key] for i in idx], dtype).reshape(-1, 1, 1)


def _box(u, v, u0, u1, v0, v1):
    return (u >= u0) & (u < u1) & (v >= v0) & (v < v1)


def _ellipse(u, v, cu, cv, ru, rv):
    return ((u - cu) / ru) ** 2 + ((v - cv) / rv) ** 2 < 1.0


def _paint_person(label: np.ndarray, u: np.ndarray, v: np.ndarray, view: np.ndarray,
                  att: dict, base: int = 0) -> None:
    """Paint one person per image into ``label`` (in place), back to front.

    ``u`` [B,1,W] and ``v`` [B,H,1] are person coordinates in units of the
    person's height: v = 0 at the top of the head, 1 at the soles; u = 0 on the
    body's axis, positive towards the person's front (side view) or their left.
    """
    front, back, side = view == 0, view == 1, view == 2
    bw = att["build"]
    au = np.abs(u)

    def paint(region, part):
        label[region] = part + base

    # legs and lower garment
    taper = bw * (0.1 - 0.03 * (v - 0.58) / 0.35)
    legs_apart = (au > 0.012) & (au < taper)
    stride = 0.09 * (v - 0.55) / 0.38
    legs_walk = np.abs(au - np.abs(stride)) < 0.042 * bw  # one leg at +stride, one at -stride
    legs = (v >= 0.56) & (v < 0.93) & np.where(side, legs_walk, legs_apart)
    hips = _box(au, v, 0, 0.105 * bw, 0.5, 0.58)
    style = att["lower_style"]
    paint(legs, SKIN_P)
    trousers = legs & ((style == 0) | ((style == 1) & (v < 0.7)))
    paint(hips | trousers, LOWER_P)
    skirt = (style == 2) & (v >= 0.5) & (v < 0.72) & (au < 0.105 * bw + (v - 0.5) * 0.28)
    paint(skirt, LOWER_P)
    toe = 0.015  # seen from the side, shoes point forward
    feet_walk = np.abs(np.abs(u - toe) - np.abs(stride)) < 0.05
    shoes = (v >= 0.93) & (v < 0.985) & np.where(side, feet_walk, (au > 0.008) & (au < 0.1 * bw))
    paint(shoes, SHOES_P)

    # torso: shoulders rounded, narrowing to the waist; narrower from the side
    half = bw * np.where(side, 0.075, 0.12 - 0.025 * (v - 0.17) / 0.36)
    half = half * np.sqrt(np.clip((v - 0.145) / 0.045, 0.0, 1.0))
    torso = (v >= 0.145) & (v < 0.53) & (au < half)
    paint(torso, UPPER_P)

    # arms: beside the torso from front/back, one swinging arm over it from the side
    arm_out = bw * 0.165
    arms = ~side & (au >= 0.118 * bw) & (au < arm_out) & (v >= 0.17) & (v < 0.47)
    hands = ~side & (au >= 0.122 * bw) & (au < arm_out - 0.004) & (v >= 0.47) & (v < 0.52)
    side_arm = side & (np.abs(u - 0.005) < 0.028 * bw) & (v >= 0.18) & (v < 0.46)
    side_hand = side & (np.abs(u - 0.005) < 0.022 * bw) & (v >= 0.46) & (v < 0.51)
    paint(arms, UPPER_P)
    paint(side_arm, SLEEVE_P)
    paint(hands | side_hand, SKIN_P)

    # neck, head, hair
    paint(_box(au, v, 0, 0.022, 0.12, 0.16), SKIN_P)
    head = _ellipse(u, v, 0.0, 0.075, 0.052, 0.068)
    long_hair = (att["hair_style"] == 1) & _ellipse(u, v, 0.0, 0.11, 0.062, 0.1) & (v > 0.06)
    behind = np.where(side, u < 0.012, ~front)  # the part of the head we see the back of
    paint(long_hair & (behind | (au > 0.035)), HAIR_P)
    paint(head, SKIN_P)
    cap = head & ((v < 0.045) | behind | (front & (au > 0.04) & (v < 0.09)))
    paint(cap, HAIR_P)

    # identity cue 1: stripe pattern (chest band, pinstripes, striped sleeves)
    pattern = att["pattern"]
    band = (pattern == 1) & torso & (v >= 0.34) & (v < 0.37)
    pin = (pattern == 2) & torso & (np.mod(u + 1.0, 0.032) < 0.011) & (v >= 0.18) & (v < 0.5)
    sleeves = (pattern == 3) & (arms | side_arm) & (np.mod(v, 0.045) < 0.02)
    paint(band | pin | sleeves, PATTERN_P)

    # identity cue 2: chest emblem, seen from the front and (foreshortened) from the side
    shape = att["emblem"]
    du = (u - 0.042) * np.where(side, 1.7, 1.0)
    dv = v - 0.27
    r = 0.034
    emblem = (
        ((shape == 1) & (du**2 + dv**2 < r**2))
        | ((shape == 2) & (np.abs(du) < 0.85 * r) & (np.abs(dv) < 0.85 * r))
        | ((shape == 3) & (dv < 0.8 * r) & (dv > -r) & (np.abs(du) < (dv + r) * 0.62))
        | ((shape == 4) & (np.abs(du) + np.abs(dv) < 1.15 * r))
    )
    paint(emblem & ~back & torso, EMBLEM_P)

    # identity cue 3: a bag
    bag = att["bag"]
    pack_back = back & _box(au, v, 0, 0.085 * bw, 0.19, 0.44)
    pack_side = side & _box(u, v, -0.075 * bw - 0.06, -0.075 * bw + 0.004, 0.19, 0.44)
    straps = front & (np.abs(au - 0.07 * bw) < 0.009) & (v >= 0.16) & (v < 0.38)
    strap_line = -0.1 + (v - 0.17) * (0.22 / 0.29)
    sling = ~side & torso & (np.abs(u - strap_line) < 0.011) & (v < 0.46)
    sling_side = side & (np.abs(u) < 0.01) & (v >= 0.17) & (v < 0.42)
    satchel = np.where(side, _box(u, v, -0.05, 0.05, 0.42, 0.54),
                       _box(u, v, 0.1 * bw + 0.005, 0.1 * bw + 0.085, 0.42, 0.54))
    hb_u = np.where(side, -0.03, 0.15 * bw)
    handbag = _box(u, v, hb_u, hb_u + np.where(side, 0.08, 0.06), 0.52, 0.61)
    handle = (np.abs(np.abs(u - hb_u - 0.03) - 0.02) < 0.006) & (v >= 0.49) & (v < 0.52)
    bags = (
        ((bag == 1) & (pack_back | pack_side | straps))
        | ((bag == 2) & (sling | sling_side | satchel))
        | ((bag == 3) & (handbag | handle))
    )
    paint(bags, BAG_P)


@functools.lru_cache(maxsize=4)
def _noise_bank(image_size: int) -> np.ndarray:
    """Standard-normal sensor noise, drawn once; images read it at random offsets (much faster
    than drawing fresh normals for every pixel, and just as deterministic)."""
    return np.random.default_rng(2019).standard_normal(8 * image_size, np.float32)


def _smooth(x: np.ndarray, passes: int) -> np.ndarray:
    """``passes`` of a separable [1 2 1]/4 blur over the image axes 1 and 2 of [B,H,W,C]."""
    for _ in range(passes):
        y = x * 0.5
        y[:, 1:] += 0.25 * x[:, :-1]
        y[:, :-1] += 0.25 * x[:, 1:]
        y[:, 0] += 0.25 * x[:, 0]
        y[:, -1] += 0.25 * x[:, -1]
        x = y * 0.5
        x[:, :, 1:] += 0.25 * y[:, :, :-1]
        x[:, :, :-1] += 0.25 * y[:, :, 1:]
        x[:, :, 0] += 0.25 * y[:, :, 0]
        x[:, :, -1] += 0.25 * y[:, :, -1]
    return x


def _background(kind: str, palette: np.ndarray, horizon: float, H: int, W: int) -> np.ndarray:
    """One camera's scene [H,W,3] from its background family and three palette colours [3,3]."""
    y = (np.arange(H, dtype=np.float32) + 0.5)[:, None] / H
    x = (np.arange(W, dtype=np.float32) + 0.5)[None, :] / W * (W / H) * 2  # square-ish units
    c0, c1, c2 = palette
    if kind == "street":  # a wall with a grid of windows over a pavement
        windows = (np.mod(x * 1.6, 1.0) < 0.45) & (np.mod(y * 3.0, 1.0) < 0.4)
        upper = np.where(windows[..., None], c1 * 0.6, c0)
        lower = c2 * (0.85 + 0.3 * (y - horizon))[..., None]
    elif kind == "indoor":  # plain wall, a skirting band, a tiled floor
        upper = np.where((y > horizon - 0.04)[..., None], c1, c0 * (0.95 + 0.1 * y)[..., None])
        tiles = (np.floor(x * 3) + np.floor(y * 8)) % 2 == 0
        lower = np.where(tiles[..., None], c2, c2 * 0.8)
    elif kind == "park":  # foliage with blotches over a path
        blot = np.sin(x * 9) * np.sin(y * 17)
        upper = (c0 * np.array([0.6, 1.0, 0.6], np.float32)) * (0.8 + 0.3 * blot)[..., None]
        lower = c2 * (0.9 + 0.1 * np.sin(x * 4))[..., None]
    else:  # plaza: shop fronts in panels of two colours over paving
        panel = np.mod(np.floor(x * 2), 2) == 0
        sign = (y > 0.12) & (y < 0.2)
        upper = np.where(sign[..., None], c2 * 0.5, np.where(panel[..., None], c0, c1))
        lower = c2 * 0.7 * (0.9 + 0.2 * y)[..., None]
    return np.where((y < horizon)[..., None], upper, lower).astype(np.float32)


def _camera_scene(cam: dict, H: int, W: int) -> np.ndarray:
    """The scene a camera films, wider and taller than one detector box, cached per camera."""
    key = (cam["background"], tuple(map(tuple, cam["palette"])), cam["horizon"], H, W)
    if key not in _SCENES:
        _SCENES[key] = _background(cam["background"], np.array(cam["palette"], np.float32),
                                   cam["horizon"], int(H * 1.2), W * 3)
    return _SCENES[key]


_SCENES: dict[tuple, np.ndarray] = {}


def _palette_for(people: list, idx: np.ndarray, shade: np.ndarray) -> np.ndarray:
    """Colours [B, 10, 3] of one person's parts, indexed by part label."""
    pal = np.zeros((len(idx), 10, 3), np.float32)
    for part, key, colours in ((SKIN_P, "skin", SKIN), (HAIR_P, "hair", HAIR), (UPPER_P, "upper", UPPER),
                               (LOWER_P, "lower", LOWER), (SHOES_P, "shoes", SHOES),
                               (EMBLEM_P, "emblem_colour", CUE), (BAG_P, "bag_colour", CUE),
                               (PATTERN_P, "pattern_colour", CUE)):
        pal[:, part] = _rgb(colours)[[people[i][key] for i in idx]]
    pal[:, [UPPER_P, LOWER_P]] *= shade[:, None, :]
    pal[:, SLEEVE_P] = pal[:, UPPER_P] * 0.78
    return pal


def render_batch(params: dict[str, np.ndarray], people: list, cams: list, H: int, W: int,
                 rng: np.random.Generator, tag_scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Draw a batch of images [B,H,W,3] uint8 and their masks [B,H,W] uint8 (``tag_scale``:
    the positive control's name tag, ``SynthConfig.tag_scale``)."""
    B = len(params["person"])
    col = lambda a: a.reshape(-1, 1, 1)  # noqa: E731  per-image value -> [B,1,1]
    yy = (np.arange(H, dtype=np.float32) + 0.5)[None, :, None]
    xx = (np.arange(W, dtype=np.float32) + 0.5)[None, None, :]
    label = np.zeros((B, H, W), np.uint8)
    shading = np.ones((B, H, W), np.float32)

    def person_coords(cx, top, ph, facing):
        return (xx - col(cx)) / col(ph) * col(facing), (yy - col(top)) / col(ph)

    def attributes(idx):
        att = {k: _attr(people, idx, k) for k in ("lower_style", "hair_style", "emblem", "bag", "pattern")}
        att["build"] = np.array([BUILDS[people[i]["build"]][1] for i in idx], np.float32).reshape(-1, 1, 1)
        return att

    # the second person, partly outside the frame, behind the main one
    has2 = params["second"] >= 0
    if has2.any():
        i2 = np.flatnonzero(has2)
        ph2 = params["ph"][i2] * params["second_scale"][i2]
        cx2 = np.where(params["second_side"][i2] > 0, W * 1.08, -0.08 * W)
        u2, v2 = person_coords(cx2, params["top"][i2], ph2, params["second_side"][i2])
        lab2 = label[i2]
        front_view = np.zeros((len(i2), 1, 1), np.int64)
        _paint_person(lab2, u2, v2, front_view, attributes(params["second"][i2]), _SECOND)
        label[i2] = lab2

    u, v = person_coords(params["cx"], params["top"], params["ph"], params["facing"])
    _paint_person(label, u, v, col(params["view"]), attributes(params["person"]))
    build = np.array([BUILDS[people[i]["build"]][1] for i in params["person"]], np.float32)
    # rounded-body shading: darker towards the silhouette's sides
    shading = np.where((label > 0) & (label < _SECOND),
                       1.0 - 0.28 * np.clip(np.abs(u) / (0.16 * col(build)), 0, 1) ** 2, shading)

    control = "tag_shown" in params
    if control:  # the name tag: three stripes at the belt, over whatever the person wears there
        on_body = (label > BG) & (label < _SECOND)
        # three stripes about v = 0.4675 (at tag_scale 1: 0.43-0.455, 0.455-0.48, 0.48-0.505)
        grow = tag_scale - 1.0
        half_width, stripe_height = 0.055 * tag_scale, 0.025 * tag_scale
        dv = col(params["tag_dv"]) if "tag_dv" in params else 0.0  # version 4: away from the belt
        for k, part in enumerate(TAG_P):
            stripe = _box(u, v - dv, -half_width, half_width, 0.43 - 0.0375 * grow + stripe_height * k,
                          0.455 - 0.0125 * grow + stripe_height * k)
            label[stripe & on_body & col(params["tag_shown"])] = part
        # the camera sign: a patch of the camera's colour on the background at the box's edge
        sign_w, sign_h = 0.2 * W, 0.12 * H
        left = np.where(params["sign_side"] < 0, 0.0, W - sign_w)
        sign = ((xx >= col(left)) & (xx < col(left) + sign_w) & (yy >= col(params["sign_y"]) * H)
                & (yy < col(params["sign_y"]) * H + sign_h) & col(params["sign_shown"]))
        label[sign & (label == BG)] = SIGN_P
    decoy = "decoy_shown" in params
    if decoy:  # version 3's decoy: a badge of three stripes on the background at the box's edge
        badge_w, stripe_h = 0.2 * W, 0.05 * H
        left = np.where(params["decoy_side"] < 0, 0.0, W - badge_w)
        across = (xx >= col(left)) & (xx < col(left) + badge_w) & col(params["decoy_shown"])
        for k, part in enumerate(DECOY_P):
            top_k = col(params["decoy_y"]) * H + stripe_h * k
            label[across & (yy >= top_k) & (yy < top_k + stripe_h) & (label == BG)] = part

    # occluders in front of everyone
    occ, pos, size = col(params["occluder"]), col(params["occ_pos"]), col(params["occ_size"])
    pole = np.broadcast_to((occ == 1) & (np.abs(xx / W - pos) < 0.03 + 0.04 * size), label.shape)
    car_top = H * (0.62 + 0.18 * size) + 0.004 * H * ((xx - pos * W) / W * 6) ** 2
    car = (occ == 2) & (yy > car_top)
    window = car & (yy < car_top + 0.06 * H)
    label[pole] = POLE_P
    label[car] = CAR_P
    label[window] = WINDOW_P
    shading = np.where(pole, 0.8 + 0.4 * np.abs(np.mod(xx / W - pos + 1, 0.07) / 0.07 - 0.5), shading)

    # a soft shadow on the ground under the feet
    shadow = (label == BG) & (((u / 0.16) ** 2 + ((v - 0.985) / 0.022) ** 2) < 1.0)
    shading[shadow] = 0.6

    # colours: one gather from the per-image palette of parts, then the camera's scene behind
    palette = np.zeros((B, _NUM_PARTS, 3), np.float32)
    palette[:, :10] = _palette_for(people, params["person"], params["shade"])
    if has2.any():
        palette[i2, _SECOND:_SECOND + 10] = _palette_for(people, params["second"][i2], params["shade"][i2])
    if control:
        palette[:, list(TAG_P)] = _rgb(CUE)[[people[i]["tag"] for i in params["person"]]]
        palette[:, SIGN_P] = _rgb(CUE)[[cams[c]["sign_colour"] for c in params["cam"]]]
    if decoy:
        palette[:, list(DECOY_P)] = _rgb(CUE)[[people[i]["decoy"] for i in params["decoy_of"]]]
    palette[:, POLE_P] = [150, 150, 156]
    palette[:, CAR_P] = params["occ_colour"]
    palette[:, WINDOW_P] = params["occ_colour"] * 0.35
    flat = label + (np.arange(B, dtype=np.intp) * _NUM_PARTS)[:, None, None]
    img = np.take(palette.reshape(-1, 3), flat, axis=0)
    scene_crops = np.empty_like(img)
    for i in range(B):  # each camera films one fixed scene; the detector box shows a part of it
        scene = _camera_scene(cams[params["cam"][i]], H, W)
        oy = int(params["bg_shift"][i, 0] * (scene.shape[0] - H))
        ox = int(params["bg_shift"][i, 1] * (scene.shape[1] - W))
        scene_crops[i] = scene[oy:oy + H, ox:ox + W]
    np.copyto(img, scene_crops, where=(label == BG)[..., None])

    # camera light and colour cast, with the shading of bodies, pole and shadow
    gain = np.array([cams[c]["gain"] for c in params["cam"]], np.float32) * params["light"]
    light = gain[:, None] * np.array([cams[c]["cast"] for c in params["cam"]], np.float32)  # [B,3]
    img *= shading[..., None] * light[:, None, None, :]

    # optics and sensor: blur, then noise
    blur = np.array([cams[c]["blur"] for c in params["cam"]])
    for passes in np.unique(blur[blur > 0]):
        at = np.flatnonzero(blur == passes)
        img[at] = _smooth(img[at], int(passes))
    sigma = np.array([cams[c]["noise"] for c in params["cam"]], np.float32)
    bank = _noise_bank(H * W * 3)
    for i, start in enumerate(rng.integers(0, len(bank) - H * W * 3, size=B)):
        img[i] += bank[start:start + H * W * 3].reshape(H, W, 3) * sigma[i]
    img += 0.5
    np.clip(img, 0, 255, out=img)
    return img.astype(np.uint8), _MASK_OF_PART[label]


# --------------------------------------------------------------------------- files
def _file_name(pid: int, cam: int, frame: int) -> str:
    """Market-1501 file name; cameras are 1-based on disk, junk is pid -1."""
    return f"{pid:04d}_c{cam + 1}s1_{frame:06d}_00.jpg" if pid >= 0 else f"-1_c{cam + 1}s1_{frame:06d}_00.jpg"


BYTES_PER_PIXEL = 80  # peak memory of drawing one pixel of a batch (66 measured), to refuse early


def _check_target(out: Path) -> None:
    """Refuse, before drawing anything, a folder that cannot hold a SynthPeople set."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; choose a folder")
    existing = [out / d for d in (*SPLITS, "masks") if (out / d).exists()]
    if existing and not (_written_by_synthpeople(out) or (out / "masks").is_dir()):
        raise ValueError(f"{out} already holds {existing[0].name}/ that SynthPeople did not write; "
                         "choose an empty or new folder")


def _written_by_synthpeople(out: Path) -> bool:
    meta = out / "meta.json"
    try:
        return meta.is_file() and json.loads(meta.read_text()).get("generator") == "SynthPeople"
    except (OSError, ValueError):
        return False


def check_memory(cfg: SynthConfig) -> None:
    """Refuse an image size whose batches would not fit in the memory available now."""
    need = _BATCH * cfg.height * cfg.width * BYTES_PER_PIXEL
    available = _available_memory()
    if available is not None and need > available:
        raise ValueError(f"drawing {cfg.height} x {cfg.width} images needs about {need / 2**30:.1f} GiB, "
                         f"{available / 2**30:.1f} GiB is available; choose a smaller height and width")


def _available_memory() -> int | None:
    """MemAvailable from /proc/meminfo (Linux); None where unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _staging_folder(out: Path) -> Path:
    """A new hidden folder beside ``out`` (same file system: moving it in is a rename), or
    inside it when ``out`` is a mount point (another file system than its parent's)."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        beside = out if out.is_dir() and out.stat().st_dev != out.parent.stat().st_dev else out.parent
        return Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=beside))
    except OSError as err:
        raise ValueError(f"cannot write to {out.parent}: {err.strerror or err}; choose another --out") from None


def _move_into_place(staging: Path, out: Path) -> None:
    """Replace the set in ``out`` (if any) by the complete one in ``staging``; other files in
    ``out`` stay. meta.json leaves first and comes back last, so that the set in between never
    passes for complete."""
    out.mkdir(exist_ok=True)
    previous = staging / "previous"
    previous.mkdir()
    for name in ("meta.json", *SPLITS, "masks"):
        if (out / name).exists():
            os.replace(out / name, previous / name)
    for name in (*SPLITS, "masks", "meta.json"):
        os.replace(staging / name, out / name)


def generate(out: str | Path, config: SynthConfig | None = None, progress: bool = True) -> dict:
    """Generate a SynthPeople set under ``out`` and return its meta data (also saved as meta.json).
    The set is drawn beside ``out`` and moved in when complete; a set already there is replaced
    only then."""
    cfg = config or SynthConfig()
    out = Path(out).expanduser().resolve()  # through symbolic links: drawn beside the real folder
    _check_target(out)
    check_memory(cfg)
    staging = _staging_folder(out)
    try:
        meta = _draw_set(staging, cfg, progress)
        _move_into_place(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return meta


def _draw_set(out: Path, cfg: SynthConfig, progress: bool) -> dict:
    """Draw every image, mask and meta.json (written last) into the folder ``out``."""
    root_seq = np.random.SeedSequence(cfg.seed)
    # spawned children depend only on their index: the control's seventh leaves the rest as they were
    (seq_people, seq_cams, seq_plan, seq_params, seq_pixels, seq_pids, seq_control, seq_decoy,
     seq_tag) = root_seq.spawn(9)
    rng_people = np.random.default_rng(seq_people)

    train_people = _draw_identities(rng_people, cfg.train_ids, cfg.family_size, 0)
    n_train_families = train_people[-1]["family"] + 1
    test_people = _draw_identities(rng_people, cfg.test_ids, cfg.family_size, n_train_families)
    cams = _draw_cameras(np.random.default_rng(seq_cams), cfg.cameras)
    plan = _split_plan(np.random.default_rng(seq_plan), cfg)
    n_distract = sum(1 for p, _ in plan["bounding_box_test"] if p >= cfg.train_ids + cfg.test_ids)
    distractors = _draw_identities(rng_people, n_distract, 1, test_people[-1]["family"] + 1) if n_distract else []
    people = train_people + test_people + distractors
    rng_control = np.random.default_rng(seq_control)
    if cfg.control:
        _draw_control(rng_control, people, cams)
    rng_decoy = np.random.default_rng(seq_decoy)
    rng_tag = np.random.default_rng(seq_tag)  # version 4's tag heights, apart from every other draw
    if cfg.decoy:
        _draw_codes(rng_decoy, people, "decoy")  # version 3's badge

    # Market-style pids: a random permutation of 1..(train+test) split between the two sets
    pid_pool = np.random.default_rng(seq_pids).permutation(cfg.train_ids + cfg.test_ids) + 1
    pid_of = np.zeros(len(people), np.int64)  # distractors keep pid 0
    pid_of[:cfg.train_ids] = np.sort(pid_pool[:cfg.train_ids])
    pid_of[cfg.train_ids:cfg.train_ids + cfg.test_ids] = np.sort(pid_pool[cfg.train_ids:])

    rng_params = np.random.default_rng(seq_params)
    frame_counter = np.zeros(cfg.cameras, np.int64)
    images_meta: dict[str, dict] = {}
    total = sum(len(v) for v in plan.values())
    bar = progress_bar(total=total, desc="SynthPeople", unit="img", disable=not progress)
    for split in SPLITS:
        shots = plan[split]
        split_people = (np.arange(cfg.train_ids) if split == "bounding_box_train"
                        else np.arange(cfg.train_ids, cfg.train_ids + cfg.test_ids))
        params = _image_params(rng_params, shots, people, cams, cfg, split_people)
        if cfg.control:
            params.update(_control_params(rng_control, split, cams, params, cfg.height))
        if cfg.tag_moves:  # version 4: the tag's offset from the belt, a share of the person's height
            params["tag_dv"] = rng_tag.uniform(*TAG_MOVES, len(shots)).astype(np.float32)
        if cfg.decoy:
            params.update(_decoy_params(rng_decoy, split, params["person"], split_people))
        for d in (out / split, out / "masks" / split):
            d.mkdir(parents=True, exist_ok=True)
        names = []
        for p, c in shots:
            frame_counter[c] += rng_params.integers(1, 25)  # increasing, irregular frame numbers
            pid = -1 if p < 0 else int(pid_of[p])
            names.append(_file_name(pid, c, int(frame_counter[c])))
        for start in range(0, len(shots), _BATCH):
            sl = slice(start, min(start + _BATCH, len(shots)))
            batch = {k: v[sl] for k, v in params.items()}
            rng_pix = np.random.default_rng(seq_pixels.spawn(1)[0])
            images, masks = render_batch(batch, people, cams, cfg.height, cfg.width, rng_pix, cfg.tag_scale)
            for i, name in enumerate(names[sl]):
                Image.fromarray(images[i]).save(out / split / name, quality=92)
                Image.fromarray(masks[i]).save(out / "masks" / split / name.replace(".jpg", ".png"),
                                               compress_level=1)
                k = start + i
                images_meta[f"{split}/{name}"] = {
                    "identity": int(params["person"][k]), "camera": int(params["cam"][k]) + 1,
                    "view": VIEWS[int(params["view"][k])], "occluder": OCCLUDERS[int(params["occluder"][k])],
                    "second_person": bool(params["second"][k] >= 0), "junk": bool(params["junk"][k]),
                }
                if cfg.control:
                    images_meta[f"{split}/{name}"].update(tag=bool(params["tag_shown"][k]),
                                                          sign=bool(params["sign_shown"][k]))
                if cfg.decoy:
                    images_meta[f"{split}/{name}"].update(decoy=bool(params["decoy_shown"][k]),
                                                          decoy_of=int(params["decoy_of"][k]))
            bar.update(sl.stop - sl.start)
    bar.close()

    meta = {
        "generator": "SynthPeople",
        "version": GENERATOR_VERSION,
        "seed": cfg.seed,
        # settings added after the control only when set: earlier sets' meta.json stays as it was
        "config": {k: v for k, v in dataclasses.asdict(cfg).items() if k not in _ADDED_LATER or v != _ADDED_LATER[k]},
        "counts": {s: len(plan[s]) for s in SPLITS},
        "cameras": [{"id": i + 1, **c} for i, c in enumerate(cams)],
        "identities": [{"index": i, "pid": int(pid_of[i]),
                        "split": "train" if i < cfg.train_ids else "test" if i < cfg.train_ids + cfg.test_ids
                        else "distractor", **_identity_names(p),
                        **({"tag": [CUE[k][0] for k in p["tag"]]} if cfg.control else {}),
                        **({"decoy": [CUE[k][0] for k in p["decoy"]]} if cfg.decoy else {})}
                       for i, p in enumerate(people)],
        "images": images_meta,
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=1))
    return meta


def incomplete(root: str | Path) -> str | None:
    """Why the SynthPeople set in ``root`` is incomplete (files missing or extra against its
    meta.json, e.g. an interrupted run of an older version), or None when it is whole."""
    root = Path(root)
    try:
        listed = json.loads((root / "meta.json").read_text())["images"]
    except (OSError, ValueError, KeyError, TypeError):
        return "its meta.json is missing or unreadable"
    for split in SPLITS:
        expected = {name.split("/", 1)[1] for name in listed if name.startswith(split + "/")}
        images = {p.name for p in (root / split).glob("*.jpg")} if (root / split).is_dir() else set()
        masks = {p.stem + ".jpg" for p in (root / "masks" / split).glob("*.png")} \
            if (root / "masks" / split).is_dir() else set()
        for what, found in (("images", images), ("masks", masks)):
            if found != expected:
                return (f"{split}: {len(found)} {what} where meta.json lists {len(expected)}"
                        + ("" if found <= expected else f", {len(found - expected)} of them not listed"))
    return None


def ensure_synthpeople(out: str | Path, config: SynthConfig | None = None, progress: bool = True) -> Path:
    """Generate a SynthPeople set at ``out`` unless one with the same settings and generator
    version is already there; return ``out``. Notebooks call this so that they share data."""
    cfg = config or SynthConfig()
    out = Path(out)
    meta_path = out / "meta.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    # notebooks run in parallel (reproduce --jobs) may ask for the same set at once: one
    # generates it while the others wait, then find it ready
    with open(out.parent / f".{out.name}.lock", "w") as lock:
        _lock(lock)
        if meta_path.is_file():
            head = json.loads(meta_path.read_text())
            if (head.get("version") == GENERATOR_VERSION and _same_config(head.get("config"), cfg)
                    and incomplete(out) is None):
                return out
        generate(out, cfg, progress=progress)
    return out


# settings a meta.json may lack, with the value that means: sets drawn before ``control``
# existed lack every one; later sets record ``decoy`` and ``tag_moves`` only when they are set
_ADDED_LATER = {"decoy": False, "tag_moves": False}
_DEFAULTS_OF_OLDER_SETS = {"control": False, "tag_scale": 1.0, **_ADDED_LATER}


def _same_config(recorded: dict | None, cfg: SynthConfig) -> bool:
    """Whether a meta.json's settings are ``cfg``'s (a missing one has its default value)."""
    return recorded is not None and {**_DEFAULTS_OF_OLDER_SETS, **recorded} == dataclasses.asdict(cfg)


def _lock(handle) -> None:
    """An exclusive lock on an open file, released when it closes (no-op where unsupported)."""
    try:
        import fcntl
    except ImportError:  # Windows: no parallel runs protection
        return
    fcntl.flock(handle, fcntl.LOCK_EX)
