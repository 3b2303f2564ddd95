"""A real-dataset folder, end to end: `reproduce --data-root` runs notebook 01 on it.

The folder is SynthPeople images copied into the CUHK03-NP layout under its file names
(PNG files, two cameras, `labeled/` and `detected/`, no meta.json), so the loaders must
detect and read it as a user's own folder. One run suffices: the notebook's path is the
same for every layout, and tests/test_datasets.py reads the Market-1501, DukeMTMC-reID and
both CUHK03-NP layouts in well under a second.
"""

import re

import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from casn_lite.data import ImageDataset, build_transforms, load_dataset
from casn_lite.engine import evaluate, load_training_state
from casn_lite.models import build_model
from casn_lite.tooling import profiles, runner


def copy_as_cuhk03(synth_root, target):
    """SynthPeople's images under CUHK03-NP's names: PNG files, two cameras."""
    for split in ("bounding_box_train", "query", "bounding_box_test"):
        (target / split).mkdir(parents=True)
        for k, image in enumerate(sorted((synth_root / split).glob("*.jpg"))):
            pid, cam = re.match(r"(-?\d+)_c(\d)", image.name).groups()
            cam = 1 + (int(cam) - 1) % 2  # CUHK03 has two cameras
            Image.open(image).save(target / split / f"{pid}_c{cam}_{k}.png")


def test_reproduce_runs_notebook_01_on_a_real_layout(tiny_synth, tmp_path, monkeypatch):
    root = tmp_path / "data"
    for variant in ("detected", "labeled"):  # CUHK03-NP ships both
        copy_as_cuhk03(tiny_synth[0], root / "cuhk03-np" / variant)
    profile_dir = tmp_path / "profiles"
    profile_dir.mkdir()
    (profile_dir / "tiny.yaml").write_text(
        'notebooks: {"01": {epochs: 1, batch_size: 8, num_instances: 2, height: 32, width: 16, embed_dim: 16}}\n')
    monkeypatch.setattr(profiles, "PROFILE_DIR", profile_dir)
    out = tmp_path / "runs"
    [result] = runner.run("tiny", only=["01"], data_root=str(root / "cuhk03-np"), out=out)
    assert result["status"] == "ok", result.get("error")
    metrics = result["metrics"]
    data = load_dataset("auto", root / "cuhk03-np")  # --data-root cuhk03-np means its detected/ boxes
    assert metrics["dataset"] == data.name == "CUHK03-NP (detected)"
    assert metrics["chance_rank1"] == 1 / len({s.pid for s in data.query})
    # what the notebook reports is the retrieval of the model it trained, on this folder
    state = load_training_state(out / "checkpoints" / "01_ide_baseline")
    model = build_model("ide", "resnet18", num_classes=data.num_train_pids, embed_dim=16)
    model.load_state_dict(state["model"])
    tf = build_transforms(32, 16)
    query, gallery = (DataLoader(ImageDataset(split, tf), batch_size=128) for split in (data.query, data.gallery))
    again = evaluate(model, query, gallery, torch.device("cpu"))
    for key in ("rank1", "mAP", "mINP"):
        assert metrics[key] == pytest.approx(again[key], abs=1e-6), key
