"""Re-ID dataset folders: Market-1501, DukeMTMC-reID, CUHK03-NP and SynthPeople.

All four share the Market-1501 layout::

    <root>/bounding_box_train/   training images
    <root>/query/                query images
    <root>/bounding_box_test/    gallery images

with file names that start ``<pid>_c<camera>``, e.g. ``0002_c1s1_000451_03.jpg``
(Market-1501), ``0005_c2_f0046985.jpg`` (DukeMTMC-reID), ``0001_c1_1.png``
(CUHK03-NP, under ``labeled/`` or ``detected/``). As in the community's loaders
(torchreid, fast-reid): junk images (pid -1) are dropped, distractors (pid 0)
stay in the gallery, camera ids become 0-based and training pids are relabelled
0..N-1 in sorted order. Query and gallery keep their original pids.
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset
from torchvision import tv_tensors

# SPLITS: the Market-1501 layout's three folders, defined where SynthPeople writes them
from .synth import SPLITS, incomplete

__all__ = [
    "DATASETS",
    "DatasetLayoutError",
    "ImageReadError",
    "Sample",
    "ReIDData",
    "load_dataset",
    "load_or_generate",
    "is_positive_control",
    "control_settings",
    "check_evaluable",
    "detect_dataset",
    "ImageDataset",
    "PairDataset",
    "read_image",
    "read_mask",
    "check_files",
    "sample_keys",
]

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp"}
NAME_PATTERN = re.compile(r"^([-\d]+)_c(\d)")


class DatasetLayoutError(ValueError):
    """A dataset folder is missing, empty or not in the expected layout."""


class ImageReadError(OSError):
    """An image file exists in the dataset but cannot be decoded."""


@dataclass(frozen=True)
class Sample:
    """One image: its path, identity (pid) and 0-based camera id."""

    path: Path
    pid: int
    camid: int


def sample_keys(samples) -> list[tuple[str, int, int]]:
    """(file name, pid, camid) of each sample, in order: what identifies a set of images
    wherever it lies (the fingerprints of training data, for checkpoints and the start cache)."""
    return [(Path(s.path).name, s.pid, s.camid) for s in samples]


@dataclass(frozen=True)
class _Layout:
    """Where a dataset's three split folders live, relative to the folder a user points at."""

    name: str
    subdirs: tuple[str, ...]  # tried in order; "" means the root itself
    max_cameras: int
    note: str


DATASETS: dict[str, _Layout] = {
    "market1501": _Layout("Market-1501", ("", "Market-1501-v15.09.15", "Market-1501", "market1501"), 6,
                          "0002_c1s1_000451_03.jpg"),
    "dukemtmc": _Layout("DukeMTMC-reID", ("", "DukeMTMC-reID", "dukemtmc-reid/DukeMTMC-reID"), 8,
                        "0005_c2_f0046985.jpg"),
    "cuhk03_labeled": _Layout("CUHK03-NP (labeled)", ("labeled", "cuhk03-np/labeled", ""), 2,
                              "cuhk03-np/labeled/query/0001_c1_1.png"),
    "cuhk03_detected": _Layout("CUHK03-NP (detected)", ("detected", "cuhk03-np/detected", ""), 2,
                               "cuhk03-np/detected/query/0001_c1_1.png"),
    "synthpeople": _Layout("SynthPeople", ("",), 9, "0002_c1s1_000015_00.jpg (python -m casn_lite data synth)"),
}


def _expected_layout(layout: _Layout, root: Path) -> str:
    """A short description of the folders we looked for, for error messages."""
    roots = [str(root / d) if d else str(root) for d in layout.subdirs]
    return (
        f"{layout.name} expects three folders of images named '<pid>_c<camera>...' "
        f"(e.g. {layout.note}):\n"
        + "".join(f"    <root>/{s}/\n" for s in SPLITS)
        + "  with <root> one of:\n"
        + "".join(f"    {r}\n" for r in roots)
    )


def _find_root(layout: _Layout, root: Path) -> Path | None:
    """The first candidate folder that holds all three splits."""
    for sub in layout.subdirs:
        cand = root / sub if sub else root
        if all((cand / s).is_dir() for s in SPLITS):
            return cand
    return None


def _parse_split(folder: Path, max_cameras: int) -> list[Sample]:
    """Samples of one split folder, junk (pid -1) dropped, camera ids 0-based."""
    samples = []
    for path in sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
        m = NAME_PATTERN.match(path.name)
        if m is None:
            raise DatasetLayoutError(
                f"{path} does not start with '<pid>_c<camera>' (e.g. 0002_c1s1_000451_03.jpg); "
                "is this a re-ID dataset folder?"
            )
        pid, cam = int(m.group(1)), int(m.group(2))
        if pid == -1:
            continue  # junk: a bad detection, ignored by the protocol
        if not 1 <= cam <= max_cameras:
            raise DatasetLayoutError(f"{path}: camera {cam} is outside 1..{max_cameras} for this dataset")
        samples.append(Sample(path, pid, cam - 1))
    return samples


REPOSITORY = Path(__file__).resolve().parents[2]


def _shown(path: Path) -> str:
    """A path as a reader of a shared notebook should see it: relative to the repository when
    it is inside it (no machine's absolute paths in committed outputs), else as it is."""
    try:
        return str(Path(path).resolve().relative_to(REPOSITORY))
    except ValueError:
        return str(path)


@dataclass
class ReIDData:
    """A re-ID dataset: training, query and gallery samples, and where they came from."""

    name: str
    root: Path
    train: list[Sample]
    query: list[Sample]
    gallery: list[Sample]
    train_pids: list[int] = field(default_factory=list)  # original pid of each training label

    @property
    def num_train_pids(self) -> int:
        return len(self.train_pids)

    @property
    def num_cameras(self) -> int:
        return 1 + max(s.camid for s in self.train + self.query + self.gallery)

    def mask_path(self, sample: Sample) -> Path:
        """Where SynthPeople keeps the person/cue mask of ``sample``."""
        return self.root / "masks" / sample.path.parent.name / (sample.path.stem + ".png")

    def summary(self) -> str:
        """A small table: images, identities and cameras per split."""
        lines = [f"{self.name} at {_shown(self.root)}", f"  {'split':<8}{'images':>8}{'ids':>7}{'cams':>6}"]
        for split, items in (("train", self.train), ("query", self.query), ("gallery", self.gallery)):
            ids = len({s.pid for s in items})
            cams = len({s.camid for s in items})
            lines.append(f"  {split:<8}{len(items):>8}{ids:>7}{cams:>6}")
        control = control_settings(self.root) if self.name == "SynthPeople" else {}
        if control.get("control"):
            tag_scale = control["tag_scale"]
            lines.append("  the positive control: a name tag per identity (mask 3) on every training image and a "
                         "quarter of the test images; per camera a vertical shift and scale and a sign (mask 4)"
                         + (f"; the tag {tag_scale:g} x its usual size" if tag_scale != 1.0 else "")
                         + ("; the tag at a random height on the body (version 4)" if control["tag_moves"] else ""))
        if control.get("decoy"):
            lines.append("  version 3 of the positive control: a decoy badge (mask 5) on the background at a random "
                         "height in half of the images, the person's own code in training, another's at test")
        return "\n".join(lines)


def _recorded_config(root: Path) -> dict:
    """The ``SynthConfig`` a SynthPeople set in ``root`` recorded in its meta.json; empty when
    there is none (another dataset) or it cannot be read."""
    try:
        config = json.loads((root / "meta.json").read_text())["config"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    return config if isinstance(config, dict) else {}


def control_settings(root: Path) -> dict:
    """The positive control's settings of the SynthPeople set in ``root``, read once from its
    meta.json: ``control``, ``tag_scale``, ``tag_moves`` and ``decoy`` (``SynthConfig``'s),
    each with its default where it was not recorded (older sets, another dataset)."""
    config = _recorded_config(root)
    return {"control": bool(config.get("control", False)), "tag_scale": float(config.get("tag_scale", 1.0)),
            "tag_moves": bool(config.get("tag_moves", False)), "decoy": bool(config.get("decoy", False))}


def is_positive_control(root: Path) -> bool:
    """Whether the SynthPeople set in ``root`` was drawn with ``SynthConfig(control=True)``."""
    return control_settings(root)["control"]


def load_dataset(name: str, root: str | Path) -> ReIDData:
    """Read a dataset folder; ``name`` is one of DATASETS or ``auto`` (detect from the layout)."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DatasetLayoutError(f"dataset folder {root} does not exist")
    if name == "auto":
        name = detect_dataset(root)
    if name not in DATASETS:
        raise DatasetLayoutError(f"unknown dataset {name!r}; choose one of: auto, {', '.join(DATASETS)}")
    layout = DATASETS[name]
    found = _find_root(layout, root)
    if found is None:
        raise DatasetLayoutError(f"{root} is not a {layout.name} folder.\n{_expected_layout(layout, root)}")
    if name == "synthpeople" and (reason := incomplete(found)) is not None:
        raise DatasetLayoutError(f"{found} holds an incomplete SynthPeople set ({reason}); generate it "
                                 f"again: python -m casn_lite data synth --out {found}")
    train, query, gallery = (_parse_split(found / s, layout.max_cameras) for s in SPLITS)
    for split, items in (("bounding_box_train", train), ("query", query), ("bounding_box_test", gallery)):
        if not items:
            raise DatasetLayoutError(f"{found / split} holds no images.\n{_expected_layout(layout, root)}")
    train_pids = sorted({s.pid for s in train})
    _warn_overlap(found, set(train_pids), {s.pid for s in query + gallery})
    label = {pid: i for i, pid in enumerate(train_pids)}
    train = [Sample(s.path, label[s.pid], s.camid) for s in train]
    return ReIDData(layout.name, found, train, query, gallery, train_pids)


def _warn_overlap(root: Path, train_pids: set[int], test_pids: set[int]) -> None:
    """Warn when identities are in both training and test splits: the scores would not measure
    re-identification of unseen people (distractors, pid 0, do not count)."""
    shared = sorted((train_pids & test_pids) - {0})
    if shared:
        shown = ", ".join(map(str, shared[:5])) + (", ..." if len(shared) > 5 else "")
        warnings.warn(f"{root}: {len(shared)} identit{'y is' if len(shared) == 1 else 'ies are'} in both "
                      f"training and test splits ({shown}); the results will overstate re-identification "
                      "of unseen people", stacklevel=3)


_DIALECTS = (  # how each dataset writes its file names after '<pid>_c<camera>'
    ("market1501", re.compile(r"^[-\d]+_c\ds\d_")),
    ("dukemtmc", re.compile(r"^[-\d]+_c\d_f\d+")),
    ("cuhk03_detected", re.compile(r"^[-\d]+_c\d_\d+\.png$")),
)


def detect_dataset(root: str | Path) -> str:
    """Guess which dataset a folder holds: SynthPeople by its meta.json, the others by how
    their file names are written (CUHK03-NP defaults to the detected boxes, as in the paper)."""
    root = Path(root)
    if (root / "meta.json").is_file() and _find_root(DATASETS["synthpeople"], root):
        return "synthpeople"
    if (root / "masks").is_dir() and _find_root(DATASETS["synthpeople"], root):
        raise DatasetLayoutError(f"{root} holds an incomplete SynthPeople set (masks/ but no meta.json: "
                                 f"generation was interrupted); generate it again: "
                                 f"python -m casn_lite data synth --out {root}")
    for cand in (root, root / "detected", root / "cuhk03-np" / "detected", *(root / d for d in
                 ("Market-1501-v15.09.15", "Market-1501", "market1501", "DukeMTMC-reID"))):
        if not all((cand / s).is_dir() for s in SPLITS):
            continue
        first = next((p.name for p in sorted((cand / "query").iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES), "")
        for name, pattern in _DIALECTS:
            if pattern.match(first):
                return name
    raise DatasetLayoutError(
        f"{root} holds no known re-ID dataset. Each dataset needs the folders "
        f"{', '.join(SPLITS)} with images named '<pid>_c<camera>...' "
        f"(for CUHK03-NP under labeled/ or detected/); known datasets: {', '.join(DATASETS)}"
    )


# --------------------------------------------------------------------------- torch datasets
def read_image(path: Path) -> Image.Image:
    """Open an image as RGB; a file that cannot be decoded raises ImageReadError naming it."""
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except Image.DecompressionBombError as err:
        raise ImageReadError(f"cannot read image {path}: too large to decode safely ({err})") from None
    except (OSError, UnidentifiedImageError) as err:
        raise ImageReadError(f"cannot read image {path}: {err}") from err


def read_mask(path: Path, size: tuple[int, int] | None = None) -> np.ndarray:
    """A mask PNG as a uint8 array [H, W]; one that cannot be decoded, or whose ``size``
    (width, height) differs from its image's, raises ImageReadError naming it: a stretched
    mask would put the person where the image does not show it."""
    try:
        with Image.open(path) as m:
            if size is not None and m.size != tuple(size):
                raise ImageReadError(f"mask {path} is {m.size[0]} x {m.size[1]} pixels but its image is "
                                     f"{size[0]} x {size[1]}; draw the masks at the images' size "
                                     "(python -m casn_lite data synth writes both)")
            return np.array(m, dtype=np.uint8)
    except ImageReadError:
        raise
    except (OSError, UnidentifiedImageError, ValueError) as err:
        raise ImageReadError(f"cannot read mask {path}: {err}") from err


def check_files(data: ReIDData, decode: bool = False, limit: int = 5) -> list[str]:
    """Every image of ``data`` that cannot be read, as "path: reason": empty files, files that
    are not images (e.g. text named .jpg) and, with ``decode``, images whose pixels cannot be
    decoded (truncated), and SynthPeople masks that are missing, broken or of another size."""
    problems = []
    masks = data.name == "SynthPeople"
    for sample in data.train + data.query + data.gallery:
        try:
            if Path(sample.path).stat().st_size == 0:
                raise ImageReadError(f"{sample.path} is empty (0 bytes)")
            if decode:
                image = read_image(sample.path)
                if masks:
                    read_mask(data.mask_path(sample), image.size)
            else:
                with Image.open(sample.path) as im:  # the header only: fast
                    im.size  # noqa: B018
        except (ImageReadError, OSError, UnidentifiedImageError) as err:
            problems.append(str(err) if str(sample.path) in str(err) else f"{sample.path}: {err}")
    return problems


class ImageDataset(Dataset):
    """Samples as a torch dataset of dicts: image, pid, camid, index (and mask, if asked).

    ``transform`` receives the image (and the mask as a ``tv_tensors.Mask``, so flips
    and crops move both) and returns the same number of values.
    """

    def __init__(self, samples: list[Sample], transform: Callable | None = None,
                 mask_of: Callable[[Sample], Path] | None = None):
        self.samples = samples
        self.transform = transform
        self.mask_of = mask_of

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict:
        s = self.samples[index]
        image = read_image(s.path)
        item = {"pid": s.pid, "camid": s.camid, "index": index}
        if self.mask_of is None:
            item["image"] = self.transform(image) if self.transform else image
            return item
        mask = tv_tensors.Mask(torch.from_numpy(read_mask(self.mask_of(s), image.size)))
        if self.transform:
            image, mask = self.transform(image, mask)
        item["image"], item["mask"] = image, mask
        return item

    @property
    def pids(self) -> list[int]:
        return [s.pid for s in self.samples]

    @property
    def camids(self) -> list[int]:
        return [s.camid for s in self.samples]


class PairDataset(Dataset):
    """Image pairs from an ImageDataset, indexed by ``(i, j)`` as a PairSampler yields them."""

    def __init__(self, images: ImageDataset):
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, pair: tuple[int, int]) -> dict:
        a, b = self.images[pair[0]], self.images[pair[1]]
        item = {"image1": a["image"], "image2": b["image"], "pid1": a["pid"], "pid2": b["pid"],
                "camid1": a["camid"], "camid2": b["camid"], "same": int(a["pid"] == b["pid"])}
        if "mask" in a:
            item["mask1"], item["mask2"] = a["mask"], b["mask"]
        return item


def load_or_generate(data_root: str | Path | None, config=None) -> ReIDData:
    """What every notebook starts with: the dataset at ``data_root`` or, when it is None,
    SynthPeople with ``config``, generated once under ``casn_lite.DATA_DIR`` and reused."""
    if data_root is not None:
        return check_evaluable(load_dataset("auto", data_root))
    from .. import DATA_DIR
    from .synth import SynthConfig, ensure_synthpeople

    cfg = config or SynthConfig()
    name = f"synthpeople-{cfg.train_ids}-{cfg.test_ids}-{cfg.cameras}-{cfg.images_per_camera}-{cfg.height}x{cfg.width}-s{cfg.seed}"
    name += "-control" if cfg.control else ""
    name += f"-tag{cfg.tag_scale:g}" if cfg.tag_scale != 1.0 else ""
    name += "-decoy" if cfg.decoy else ""
    name += "-tagmoves" if cfg.tag_moves else ""
    return load_dataset("synthpeople", ensure_synthpeople(DATA_DIR / name, cfg))


def check_evaluable(data: ReIDData) -> ReIDData:
    """Refuse, before any training, a dataset whose test split cannot be scored (no query has
    a gallery image of its identity from another camera: one camera, or disjoint identities),
    and warn when fewer than half of its queries can be (the scores would rest on them alone)."""
    from ..evaluation import count_valid_queries, warn_if_few_valid

    valid = count_valid_queries([s.pid for s in data.query], [s.pid for s in data.gallery],
                                [s.camid for s in data.query], [s.camid for s in data.gallery])
    if valid == 0:
        cameras = len({s.camid for s in data.query + data.gallery})
        raise DatasetLayoutError(
            f"{data.root}: no query has a gallery image of its identity from another camera "
            f"({cameras} camera{'s' if cameras != 1 else ''} in the test split), so nothing could be scored; "
            "re-ID evaluation needs each query's identity in the gallery from a second camera")
    warn_if_few_valid(valid, len(data.query), "the scores will rest")
    return data
