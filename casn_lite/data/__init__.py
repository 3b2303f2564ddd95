"""Data: the SynthPeople generator, re-ID dataset loaders, transforms and samplers."""

from .datasets import (
    DATASETS,
    DatasetLayoutError,
    ImageDataset,
    ImageReadError,
    PairDataset,
    ReIDData,
    Sample,
    detect_dataset,
    load_dataset,
    load_or_generate,
    read_image,
)
from .loaders import Loaders, cross_camera_matches, pair_loader, reid_loaders, test_pair_loader
from .samplers import IdentitySampler, PairSampler
from .synth import PRESETS, SynthConfig, ensure_synthpeople, generate
from .transforms import build_transforms, denormalize

__all__ = [
    "DATASETS", "DatasetLayoutError", "ImageDataset", "ImageReadError", "PairDataset", "ReIDData",
    "Sample", "detect_dataset", "load_dataset", "load_or_generate", "read_image", "IdentitySampler", "PairSampler", "PRESETS",
    "SynthConfig", "ensure_synthpeople", "generate", "build_transforms", "denormalize",
    "Loaders", "reid_loaders", "pair_loader", "test_pair_loader", "cross_camera_matches",
]
