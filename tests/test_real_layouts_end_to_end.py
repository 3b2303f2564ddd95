"""A real-dataset folder, end to end: `reproduce --data-root` runs notebook 01 on it.

The folders are SynthPeople images copied into each community layout under that layout's
file names (no meta.json), so the loaders must detect and read them as a user's own
Market-1501, DukeMTMC-reID or CUHK03-NP folder.
"""

import re
import shutil

import pytest
from PIL import Image

from casn_lite import reproduce

RENAME = {  # Market-1501 file name -> the layout's own
    "market1501": lambda pid, cam, k: f"{pid}_c{cam}s1_{k:06d}_00.jpg",
    "dukemtmc": lambda pid, cam, k: f"{pid}_c{cam}_f{k:07d}.jpg",
    "cuhk03": lambda pid, cam, k: f"{pid}_c{cam}_{k}.png",  # CUHK03-NP ships PNG files
}
LAYOUTS = {"market1501": "Market-1501-v15.09.15", "dukemtmc": "DukeMTMC-reID",
           "cuhk03_detected": "cuhk03-np/detected", "cuhk03_labeled": "cuhk03-np/labeled"}


def copy_as(synth_root, target, dialect):
    for split in ("bounding_box_train", "query", "bounding_box_test"):
        (target / split).mkdir(parents=True)
        for k, image in enumerate(sorted((synth_root / split).glob("*.jpg"))):
            pid, cam = re.match(r"(-?\d+)_c(\d)", image.name).groups()
            if dialect == "cuhk03":  # CUHK03 has two cameras
                cam = 1 + (int(cam) - 1) % 2
            name = RENAME[dialect](pid, cam, k)
            if name.endswith(".png"):
                Image.open(image).save(target / split / name)
            else:
                shutil.copy(image, target / split / name)


@pytest.mark.parametrize("name", ["market1501", "dukemtmc", "cuhk03_detected"])
def test_reproduce_runs_notebook_01_on_a_real_layout(tiny_synth, tmp_path, monkeypatch, name):
    root = tmp_path / "data"
    copy_as(tiny_synth[0], root / LAYOUTS[name], name.split("_")[0])
    if name.startswith("cuhk03"):  # CUHK03-NP ships both; --data-root points at cuhk03-np
        copy_as(tiny_synth[0], root / LAYOUTS["cuhk03_labeled"], "cuhk03")
        data_root = root / "cuhk03-np"
    else:
        data_root = root / LAYOUTS[name]
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "tiny.yaml").write_text(
        'notebooks: {"01": {epochs: 1, batch_size: 8, num_instances: 2, height: 64, width: 32}}\n')
    monkeypatch.setattr(reproduce, "PROFILE_DIR", profiles)
    [result] = reproduce.run("tiny", only=["01"], data_root=str(data_root), out=tmp_path / "runs")
    assert result["status"] == "ok", result.get("error")
    expected = {"market1501": "Market-1501", "dukemtmc": "DukeMTMC-reID", "cuhk03_detected": "CUHK03-NP (detected)"}
    assert result["metrics"]["dataset"] == expected[name]
    assert 0 <= result["metrics"]["rank1"] <= 1
