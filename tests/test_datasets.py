"""Dataset folders in each community layout, built by the tests, and the errors users see."""

import numpy as np
import pytest
from PIL import Image

from casn_lite.data import (
    DatasetLayoutError,
    ImageDataset,
    ImageReadError,
    detect_dataset,
    load_dataset,
)
from casn_lite.tooling.cli import main

# (pid, camera) per split; -1 is junk, 0 a distractor
SPLIT_CONTENT = {
    "bounding_box_train": [(7, 1), (7, 2), (3, 1), (3, 2), (12, 2), (-1, 1)],
    "query": [(21, 1), (30, 2)],
    "bounding_box_test": [(21, 2), (30, 1), (0, 1), (-1, 2), (21, 1)],
}
DIALECTS = {
    "market1501": lambda pid, cam, k: f"{pid:04d}_c{cam}s1_{k:06d}_00.jpg" if pid >= 0 else f"-1_c{cam}s1_{k:06d}_00.jpg",
    "dukemtmc": lambda pid, cam, k: f"{pid:04d}_c{cam}_f{k:07d}.jpg",
    "cuhk03": lambda pid, cam, k: f"{pid:04d}_c{cam}_{k}.png",
}


def write_split_tree(root, dialect):
    for split, items in SPLIT_CONTENT.items():
        (root / split).mkdir(parents=True)
        for k, (pid, cam) in enumerate(items):
            name = DIALECTS[dialect](pid, cam, k)
            Image.new("RGB", (8, 16), (k * 20, 100, 50)).save(root / split / name)
    return root


def check_protocol(data):
    # junk dropped everywhere, distractor kept in the gallery, train pids relabelled in sorted order
    assert data.train_pids == [3, 7, 12]
    assert sorted({s.pid for s in data.train}) == [0, 1, 2]
    assert [s.pid for s in data.train if s.path.name.startswith("0007")] == [1, 1]
    assert all(s.pid != -1 for s in data.train + data.query + data.gallery)
    assert sorted(s.pid for s in data.gallery) == [0, 21, 21, 30]
    assert {s.camid for s in data.train} == {0, 1}  # cameras 1, 2 on disk -> 0, 1


@pytest.mark.parametrize("name, subdir", [("market1501", "Market-1501-v15.09.15"), ("market1501", ""),
                                          ("dukemtmc", "DukeMTMC-reID")])
def test_market_style_layouts(tmp_path, name, subdir):
    write_split_tree(tmp_path / subdir if subdir else tmp_path, "market1501" if name == "market1501" else name)
    check_protocol(load_dataset(name, tmp_path))
    assert detect_dataset(tmp_path) == name
    data = load_dataset("auto", tmp_path)
    check_protocol(data)
    assert data.name == {"market1501": "Market-1501", "dukemtmc": "DukeMTMC-reID"}[name]


def test_cuhk03_np_labeled_and_detected(tmp_path):
    for variant in ("labeled", "detected"):
        write_split_tree(tmp_path / "cuhk03-np" / variant, "cuhk03")
    labeled = load_dataset("cuhk03_labeled", tmp_path)
    detected = load_dataset("cuhk03_detected", tmp_path / "cuhk03-np")
    check_protocol(labeled)
    check_protocol(detected)
    assert labeled.root.name == "labeled" and detected.root.name == "detected"
    assert detect_dataset(tmp_path) == "cuhk03_detected"


def test_synthpeople_detected_and_masks_found(tiny_synth):
    root, _ = tiny_synth
    data = load_dataset("auto", root)
    assert data.name == "SynthPeople"
    assert data.mask_path(data.query[0]).is_file()
    assert "train" in data.summary() and "gallery" in data.summary()


def test_summary_shows_paths_inside_the_repository_relative_to_it(tiny_synth):
    from casn_lite.data.datasets import REPOSITORY, ReIDData

    inside = ReIDData("SynthPeople", REPOSITORY / "data" / "x", [], [], [])
    assert inside.summary().splitlines()[0] == "SynthPeople at data/x"
    outside = load_dataset("synthpeople", tiny_synth[0])
    assert str(tiny_synth[0]) in outside.summary().splitlines()[0], "elsewhere: the path as given"


def test_missing_folder_is_one_clear_error(tmp_path):
    with pytest.raises(DatasetLayoutError, match="does not exist"):
        load_dataset("market1501", tmp_path / "nowhere")


def test_wrong_layout_names_the_expected_one(tmp_path):
    (tmp_path / "images").mkdir()
    with pytest.raises(DatasetLayoutError) as err:
        load_dataset("market1501", tmp_path)
    msg = str(err.value)
    assert "bounding_box_train" in msg and "query" in msg and "Market-1501-v15.09.15" in msg
    with pytest.raises(DatasetLayoutError, match="no known re-ID dataset"):
        load_dataset("auto", tmp_path)


def test_empty_split_and_bad_names_are_reported(tmp_path):
    for split in SPLIT_CONTENT:
        (tmp_path / split).mkdir()
    with pytest.raises(DatasetLayoutError, match="holds no images"):
        load_dataset("market1501", tmp_path)
    Image.new("RGB", (4, 4)).save(tmp_path / "query" / "holiday.jpg")
    with pytest.raises(DatasetLayoutError, match="holiday.jpg"):
        load_dataset("market1501", tmp_path)


def test_unreadable_image_names_its_path(tmp_path):
    write_split_tree(tmp_path, "market1501")
    broken = next((tmp_path / "query").iterdir())
    broken.write_bytes(b"not a jpeg")
    data = load_dataset("market1501", tmp_path)
    ds = ImageDataset(data.query)
    index = [s.path for s in data.query].index(broken)
    with pytest.raises(ImageReadError, match=broken.name):
        ds[index]


def test_cli_reports_errors_without_traceback(tmp_path, capsys):
    assert main(["data", "info", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err


def test_cli_generates_and_reads_a_set(tmp_path, capsys):
    out = tmp_path / "synth"
    args = ["data", "synth", "--out", str(out), "--train-ids", "3", "--test-ids", "3", "--cameras", "2",
            "--images-per-camera", "2", "--height", "64", "--width", "32", "--quiet"]
    assert main(args) == 0
    assert "images/s" in capsys.readouterr().out
    assert main(["data", "info", str(out)]) == 0
    assert "SynthPeople" in capsys.readouterr().out
    assert np.array(Image.open(next((out / "query").iterdir()))).shape == (64, 32, 3)
