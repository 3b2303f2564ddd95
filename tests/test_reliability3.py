"""Issue 23, reliability round three: one section per numbered case of the issue."""


import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import jupytext
import nbformat
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from casn_lite.data import (
    IdentitySampler,
    ImageDataset,
    ImageReadError,
    build_transforms,
    load_dataset,
    pair_loader,
    synth,
)
from casn_lite.engine import (
    CheckpointMismatch,
    CheckpointRefused,
    JointLoader,
    fit,
    seed_everything,
)
from casn_lite.losses import CASNLoss
from casn_lite.tooling import pairs, profiles, runner, signals
from casn_lite.tooling.cli import main
from casn_lite.tooling.locks import FolderBusy, lock_folder

from .support import TINY
from .test_reliability import linear_loss, settings, tiny_run
from .test_reproduce import HEADER, make_project


class Planted:
    """Unpickled, it creates a file: what a crafted checkpoint could do with a shell command."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def train_command(root, out, *extra):
    """The smallest ``train`` run: IDE, ResNet-18 at 32 x 16, one epoch, no workers."""
    return ["train", "--variant", "IDE", "--data-root", str(root), "--backbone", "resnet18", "--height", "32",
            "--width", "16", "--epochs", "1", "--batch-size", "8", "--num-instances", "2", "--workers", "0",
            "--lr", "1e-3", "--out", str(out), "--quiet", *extra]


def one_line_error(capsys, *words):
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    for word in words:
        assert word in err, err
    return err


# --------------------------------------------------------------------------- 1. last.pt runs no code
def test_a_training_checkpoint_holds_plain_values_and_resumes(tiny_synth, tmp_path):
    model, loader = tiny_run(tiny_synth[0])
    scores = lambda m: {"cmc": np.array([0.5, 1.0]), "mAP": np.float64(0.25)}  # noqa: E731  as evaluate returns
    history = fit(model, loader, settings(tmp_path), linear_loss, eval_fn=scores)
    state = torch.load(tmp_path / "last.pt", weights_only=True)  # no pickled objects: nothing to run
    assert state["history"][0]["cmc"] == [0.5, 1.0] and state["history"][0]["mAP"] == 0.25
    model, loader = tiny_run(tiny_synth[0])
    again = fit(model, loader, settings(tmp_path, epochs=1), linear_loss, eval_fn=scores)
    assert again[0]["loss"] == history[0]["loss"], "resumed: the recorded epoch, not a new one"


def crafted_last_pt(folder, marker):
    folder.mkdir(parents=True, exist_ok=True)
    torch.save({"model": {}, "history": [], "note": Planted(marker)}, folder / "last.pt")


def test_a_crafted_last_pt_runs_no_code_in_fit(tiny_synth, tmp_path):
    marker = tmp_path / "pwned"
    crafted_last_pt(tmp_path / "ckpt", marker)
    model, loader = tiny_run(tiny_synth[0])
    with pytest.raises(CheckpointRefused, match="could run code"):
        fit(model, loader, settings(tmp_path / "ckpt"), linear_loss)
    assert not marker.exists(), "unpickling ran code from the file"


def test_a_crafted_last_pt_runs_no_code_in_train(tiny_synth, tmp_path, capsys):
    marker, out = tmp_path / "pwned", tmp_path / "run"
    crafted_last_pt(out / "checkpoints", marker)
    assert main(train_command(tiny_synth[0], out)) == 2
    one_line_error(capsys, "refused", "--restart")
    assert not marker.exists()


# --------------------------------------------------------------------------- 2. every change is noticed
def feed(root, height=32, width=16, batch_size=8, num_instances=2, sampler_seed=0, pad=2, erase_p=0.5,
         flip_p=0.5, pairs=False):
    """A model that takes any input size and a loader built from each setting that shapes training."""
    seed_everything(0)
    data = load_dataset("synthpeople", root)
    train = ImageDataset(data.train, build_transforms(height, width, train=True, pad=pad, erase_p=erase_p,
                                                      flip_p=flip_p))
    loader = DataLoader(train, batch_size=batch_size, drop_last=True,
                        sampler=IdentitySampler(train.pids, batch_size, num_instances, seed=sampler_seed))
    if pairs:
        loader = JointLoader(loader, pair_loader(data, height, width, 4, len(loader), seed=sampler_seed))
    model = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d((4, 2)), torch.nn.Flatten(),
                                torch.nn.Linear(24, data.num_train_pids))
    return model, loader


@pytest.mark.parametrize("change, named", [
    ({"height": 48, "width": 24}, "input size"),
    ({"pad": 0}, "augmentation"),
    ({"erase_p": 0.0}, "augmentation"),
    ({"flip_p": 0.0}, "augmentation"),
    ({"batch_size": 12, "num_instances": 3}, "samplers"),
    ({"num_instances": 4}, "samplers"),
    ({"sampler_seed": 1}, "samplers"),
    ({"pairs": True}, "samplers"),
])
def test_resume_notices_each_change_of_what_feeds_training(tiny_synth, tmp_path, change, named):
    model, loader = feed(tiny_synth[0])
    fit(model, loader, settings(tmp_path), linear_loss)
    model, loader = feed(tiny_synth[0], **change)
    with pytest.raises(CheckpointMismatch, match=named):
        fit(model, loader, settings(tmp_path), linear_loss)


def test_resume_notices_a_replaced_image_and_other_loss_options(tiny_synth, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(tiny_synth[0], root)
    model, loader = feed(root)
    fit(model, loader, settings(tmp_path / "a"), linear_loss)
    first = sorted((root / "bounding_box_train").iterdir())[0]
    first.write_bytes(first.read_bytes() + b"\0")  # the same name, another picture
    model, loader = feed(root)
    with pytest.raises(CheckpointMismatch, match="training images"):
        fit(model, loader, settings(tmp_path / "a"), linear_loss)

    class Plain(CASNLoss):  # L_ide on the tiny linear model, with CASN's options
        def forward(self, model, batch, device, progress=0.0):
            return linear_loss(model, batch, device)

    model, loader = feed(tiny_synth[0])
    fit(model, loader, settings(tmp_path / "b"), Plain(ia=True, sa=False, lambda_ia=1.0))
    model, loader = feed(tiny_synth[0])
    with pytest.raises(CheckpointMismatch, match="lambda_ia=0.5"):
        fit(model, loader, settings(tmp_path / "b"), Plain(ia=True, sa=False, lambda_ia=0.5))


def test_train_refuses_to_resume_at_another_input_size(tiny_synth, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(train_command(tiny_synth[0], out)) == 0
    capsys.readouterr()
    command = train_command(tiny_synth[0], out)
    command[command.index("--height") + 1], command[command.index("--width") + 1] = "48", "24"
    assert main(command) == 2
    one_line_error(capsys, "input size", "--restart")


# --------------------------------------------------------------------------- 4. few valid queries
def copy_as_market(tiny, root, keep_gallery=None, camera=None):
    """The tiny set's three splits as a Market-1501 folder; ``keep_gallery``: the gallery
    identities kept; ``camera``: every image renamed to that camera."""
    for split in ("bounding_box_train", "query", "bounding_box_test"):
        (root / split).mkdir(parents=True)
        for path in (tiny / split).iterdir():
            pid = int(path.name.split("_")[0])
            if split == "bounding_box_test" and keep_gallery is not None and pid not in keep_gallery:
                continue
            name = path.name if camera is None else path.name[:6] + str(camera) + path.name[7:]
            shutil.copy(path, root / split / name)
    return root


def test_a_score_from_few_valid_queries_is_recorded_and_warned_about(tiny_synth, tmp_path, capsys):
    tiny = tiny_synth[0]
    first = min(int(p.name[:4]) for p in (tiny / "query").iterdir())
    root = copy_as_market(tiny, tmp_path / "few", keep_gallery={first, 0})
    out = tmp_path / "run"
    assert main(train_command(root, out)) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    queries = len(list((root / "query").iterdir()))
    assert 0 < metrics["num_valid_queries"] < queries / 2 and metrics["num_queries"] == queries
    err = capsys.readouterr().err
    warned = [line for line in err.splitlines() if "queries have a true match" in line]
    assert warned and all(line.startswith("warning: only ") for line in warned), err
    assert "Traceback" not in err and "warnings.warn" not in err, "one line per warning"


def test_a_test_split_with_one_camera_is_refused_before_training(tiny_synth, tmp_path, capsys):
    root = copy_as_market(tiny_synth[0], tmp_path / "one", camera=1)
    out = tmp_path / "run"
    assert main(train_command(root, out)) == 2
    one_line_error(capsys, "no query has a gallery image of its identity from another camera", "1 camera")
    assert not (out / "checkpoints").exists(), "refused before training"


# --------------------------------------------------------------------------- 5. masks and broken images
def masked_item(root, mask_bytes=None, mask_size=None):
    data = load_dataset("synthpeople", root)
    sample = data.train[0]
    mask = data.mask_path(sample)
    if mask_size is not None:
        from PIL import Image

        Image.new("L", mask_size).save(mask)
    if mask_bytes is not None:
        mask.write_bytes(mask_bytes(mask.read_bytes()))
    dataset = ImageDataset([sample], build_transforms(64, 32), mask_of=data.mask_path)
    return dataset, mask


def test_a_mask_of_another_size_or_truncated_is_refused_by_name(tiny_synth, tmp_path):
    root = tmp_path / "set"
    shutil.copytree(tiny_synth[0], root)
    dataset, mask = masked_item(root, mask_size=(8, 16))  # 16 x 8 for a 64 x 32 image
    with pytest.raises(ImageReadError, match="8 x 16 pixels but its image is 32 x 64") as err:
        dataset[0]
    assert str(mask) in str(err.value)
    shutil.copy(tiny_synth[0] / mask.relative_to(root), mask)
    assert dataset[0]["mask"].shape == (64, 32), "the right size is read as before"
    dataset, mask = masked_item(root, mask_bytes=lambda b: b[: len(b) // 2])
    with pytest.raises(ImageReadError, match="cannot read mask") as err:
        dataset[0]
    assert str(mask) in str(err.value)


def test_data_info_finds_empty_and_fake_images_and_check_decodes_every_mask(tiny_synth, tmp_path, capsys):
    root = tmp_path / "set"
    shutil.copytree(tiny_synth[0], root)
    assert main(["data", "info", str(root), "--check"]) == 0
    assert "decode" in capsys.readouterr().out
    images = sorted(p for p in (root / "bounding_box_test").iterdir() if not p.name.startswith("-1"))
    images[0].write_bytes(b"")
    images[1].write_text("not a picture")
    assert main(["data", "info", str(root)]) == 2
    one_line_error(capsys, "2 of", images[0].name, images[1].name, "empty")
    shutil.copy(tiny_synth[0] / "bounding_box_test" / images[0].name, images[0])
    shutil.copy(tiny_synth[0] / "bounding_box_test" / images[1].name, images[1])
    mask = root / "masks" / "query" / (sorted((root / "query").iterdir())[0].stem + ".png")
    mask.write_bytes(mask.read_bytes()[:60])
    assert main(["data", "info", str(root)]) == 0, "the quick pass reads headers only"
    capsys.readouterr()
    assert main(["data", "info", str(root), "--check"]) == 2
    one_line_error(capsys, "1 of", mask.name)


# --------------------------------------------------------------------------- 7. train locks its --out
def _reaped() -> int:
    """The id of a process that has ended (and been reaped)."""
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_train_locks_its_out_and_sweeps_what_killed_runs_left(tiny_synth, tmp_path, capsys):
    out = tmp_path / "run"
    (out / "checkpoints").mkdir(parents=True)
    stale = [out / f".model.pt.{_reaped()}.0a1b2c3d.tmp", out / "checkpoints" / f".last.pt.{_reaped()}.4e5f6a7b.tmp"]
    live = out / f".metrics.json.{os.getppid()}.0a1b2c3d.tmp"  # a process that still runs
    for path in (*stale, live):
        path.write_bytes(b"partial")
    with lock_folder(out, "train"):
        assert main(train_command(tiny_synth[0], out, "--lr", "2e-3")) == 2
        one_line_error(capsys, f"another train run (process {os.getpid()}) is writing to {out}")
    assert not (out / "metrics.json").exists() and all(p.exists() for p in stale), "refused before anything"
    assert main(train_command(tiny_synth[0], out)) == 0
    assert not any(p.exists() for p in stale) and live.exists(), "a dead process's files go, a live one's stay"
    with lock_folder(out, "reproduce"), pytest.raises(FolderBusy, match="another reproduce run"):
        with lock_folder(out, "train"):
            pass


# --------------------------------------------------------------------------- 8. no temporary file stays
def full_disk_at(monkeypatch, name):
    """torch.save writes part of the file named ``name``, then fails as torch does on a full disk."""
    real = torch.save

    def save(obj, f, *args, **kwargs):
        if Path(str(f)).name.startswith(f".{name}."):
            Path(f).write_bytes(b"x" * 1000)
            raise RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 1024 vs 980")
        return real(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)


def leftovers(folder):
    return sorted(p.name for p in Path(folder).rglob("*.tmp"))


@pytest.mark.parametrize("name", ["last.pt", "model.pt"])
def test_a_full_disk_is_one_line_and_leaves_no_temporary_file(tiny_synth, tmp_path, capsys, monkeypatch, name):
    out = tmp_path / "run"
    full_disk_at(monkeypatch, name)
    assert main(train_command(tiny_synth[0], out)) == 2
    one_line_error(capsys, f"cannot write {out}", name, "no space left")
    assert leftovers(out) == []


DRIVER = """
import os, signal, sys
from pathlib import Path
import torch

ready, argv = sys.argv[1], sys.argv[2:]
real = torch.save

def save(obj, f, *args, **kwargs):
    real(obj, f, *args, **kwargs)
    if Path(str(f)).name.startswith(".last.pt."):  # the temporary file is written, not yet moved
        Path(ready).write_text(str(os.getpid()))
        signal.pause()  # until SIGTERM

torch.save = save
from casn_lite.tooling import pairs, profiles, runner, signals
from casn_lite.tooling.cli import main
sys.exit(main(argv))
"""


def test_sigterm_during_a_save_removes_the_temporary_file_and_the_lock(tiny_synth, tmp_path):
    out, ready = tmp_path / "run", tmp_path / "ready"
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    with subprocess.Popen([sys.executable, str(driver), str(ready), *train_command(tiny_synth[0], out)],
                          stderr=subprocess.PIPE, text=True, env=env) as child:
        while not ready.exists() and child.poll() is None:
            time.sleep(0.05)  # polling a file, not racing: the child waits for the signal
        assert ready.exists(), child.stderr.read()
        assert leftovers(out), "the temporary file exists while the save waits"
        child.send_signal(signal.SIGTERM)
        err = child.stderr.read()
        assert child.wait(timeout=120) == 143
    assert leftovers(out) == [], "removed on the way out"
    assert err.strip().splitlines()[-1].startswith("interrupted:") and "SIGTERM" in err and "Traceback" not in err
    with lock_folder(out, "train"):  # the lock went with the process
        pass


# --------------------------------------------------------------------------- 11. train's mistakes, one line each
@pytest.mark.parametrize("flags, named", [
    (["--num-instances", "0"], "--num-instances must be at least 1"),
    (["--epochs", "0"], "--epochs must be at least 1"),
    (["--epochs", "-3"], "--epochs must be at least 1"),
    (["--batch-size", "6", "--num-instances", "4"], "multiple of --num-instances"),
    (["--lr", "0"], "--lr must be a positive number"),
    (["--batch-size", "64", "--num-instances", "2"], "lower --batch-size or raise --num-instances"),
])
def test_train_refuses_bad_flags_before_training(tiny_synth, tmp_path, capsys, flags, named):
    out = tmp_path / "run"
    assert main(train_command(tiny_synth[0], out, *flags)) == 2
    one_line_error(capsys, named)
    assert not (out / "checkpoints").exists()


def test_train_refuses_an_out_that_is_a_file(tiny_synth, tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("mine")
    assert main(train_command(tiny_synth[0], afile)) == 2
    one_line_error(capsys, "is a file")
    assert afile.read_text() == "mine"


def test_a_bad_image_read_by_workers_and_a_diverging_loss_are_one_line(tiny_synth, tmp_path, capsys):
    root = copy_as_market(tiny_synth[0], tmp_path / "data")
    bad = sorted((root / "bounding_box_train").iterdir())[3]
    bad.write_text("not a picture")
    assert main(train_command(root, tmp_path / "a", "--workers", "2")) == 2
    one_line_error(capsys, f"cannot read image {bad}")
    assert main(train_command(tiny_synth[0], tmp_path / "b", "--lr", "1e30")) == 2
    one_line_error(capsys, "loss became", "lower --lr")


def test_synth_through_a_symlink_to_another_file_system(tmp_path, monkeypatch):
    """``a/`` and ``b/`` play two file systems: a rename from one to the other fails."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b" / "set").mkdir(parents=True)
    (tmp_path / "a" / "set").symlink_to(tmp_path / "b" / "set")
    real = os.replace

    def replace(src, dst):
        side = lambda p: Path(p).resolve().relative_to(tmp_path.resolve()).parts[0]  # noqa: E731
        if side(src) != side(Path(dst).parent):
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        return real(src, dst)

    monkeypatch.setattr(synth.os, "replace", replace)
    synth.generate(tmp_path / "a" / "set", TINY, progress=False)
    assert load_dataset("synthpeople", tmp_path / "a" / "set").name == "SynthPeople"
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["set"], "nothing left beside the link"


# --------------------------------------------------------------------------- 3. SIGTERM during reproduce
@pytest.fixture
def project(tmp_path, monkeypatch):
    return make_project(tmp_path, monkeypatch)


STOPS = HEADER + """# %% tags=["parameters"]
runner = 0
flag = ""

# %%
import os, pathlib, signal, time
if pathlib.Path(flag).exists():
    pathlib.Path(flag).write_text(str(os.getpid()))
    os.kill(runner, signal.SIGTERM)  # as `kill` or a batch system would
    time.sleep(120)

# %% tags=["metrics"]
print('{"done": 1}')
"""


def test_sigterm_during_a_restart_keeps_the_complete_notebook_and_never_reports_a_stale_ok(project, capsys):
    (project / "notebooks" / "02_stops.py").write_text(STOPS)
    flag, out = project / "flag", project / "runs"
    (project / "profiles" / "stops.yaml").write_text(f"defaults: {{runner: {os.getpid()}, flag: '{flag}'}}\n")
    assert runner.run("stops", only=["02"], out=out)[0]["status"] == "ok"
    good, record = (out / "02_stops.ipynb").read_bytes(), (out / "02_stops.metrics.json").read_text()
    flag.touch()
    with pytest.raises(signals.Terminated):
        runner.run("stops", only=["02"], out=out, restart=True)
    assert (out / "02_stops.ipynb").read_bytes() == good, "the complete notebook is kept"
    assert (out / "02_stops.metrics.json").read_text() == record
    stopped = nbformat.read(out / "02_stops.interrupted.ipynb", as_version=4)
    assert stopped.metadata.papermill["status"] == "interrupted"
    assert [c.metadata.papermill["status"] for c in stopped.cells if c.cell_type == "code"][-1] == "pending"
    assert leftovers(out) == [], "no temporary notebook left"
    flag.unlink()
    capsys.readouterr()
    assert runner.run("stops", only=["02"], out=out)[0]["status"] == "ok"
    assert "finished earlier, skipped" in capsys.readouterr().out, "the kept notebook is complete"
    (out / "02_stops.ipynb").write_bytes(stopped_bytes := (out / "02_stops.interrupted.ipynb").read_bytes())
    assert runner.run("stops", only=["02"], out=out)[0]["status"] == "ok"
    assert "skipped" not in capsys.readouterr().out, "a notebook that is not the recorded one runs again"
    assert (out / "02_stops.ipynb").read_bytes() != stopped_bytes


def test_an_interruption_without_an_earlier_run_is_recorded_in_place(project):
    (project / "notebooks" / "02_stops.py").write_text(STOPS)
    flag, out = project / "flag", project / "runs"
    flag.touch()
    (project / "profiles" / "stops.yaml").write_text(f"defaults: {{runner: {os.getpid()}, flag: '{flag}'}}\n")
    with pytest.raises(signals.Terminated):
        runner.run("stops", only=["02"], out=out)
    record = json.loads((out / "02_stops.metrics.json").read_text())
    assert record["status"] == "interrupted" and record["error"] == "stopped by SIGTERM"
    assert nbformat.read(out / "02_stops.ipynb", as_version=4).metadata.papermill["status"] == "interrupted"


# --------------------------------------------------------------------------- 6, 9. parallel runs stop whole
MEETS_AND_WAITS = HEADER + """# %% tags=["parameters"]
meeting = ""
runner = 0
stop = ""

# %%
import os, pathlib, signal, time
here = pathlib.Path(meeting)
(here / f"{os.getpid()}-{os.getppid()}").touch()  # this kernel and its worker
deadline = time.time() + 120
while len(list(here.iterdir())) < 2 and time.time() < deadline:
    time.sleep(0.05)  # both notebooks run
if stop and sorted(here.iterdir())[0].name.startswith(str(os.getpid())):  # one of them stops the run
    for pid in (runner, os.getppid()) if stop == "SIGINT" else (runner,):  # Ctrl-C reaches the group
        os.kill(pid, getattr(signal, stop))
time.sleep(120)

# %% tags=["metrics"]
print("{}")
"""


def running(pid: int) -> bool:
    """Whether a process runs (a zombie, ended but not reaped, does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in "ZX"
    except OSError:
        return False


def parallel_project(project, stop):
    for name in ("00_ok.py", "01_fails.py"):
        (project / "notebooks" / name).unlink()
    for name in ("00_a.py", "01_b.py"):
        (project / "notebooks" / name).write_text(MEETS_AND_WAITS)
    (project / "meeting").mkdir()
    (project / "profiles" / "par.yaml").write_text(
        f"defaults: {{meeting: '{project / 'meeting'}', runner: {os.getpid()}, stop: {stop}}}\n")
    return project / "meeting"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_sigterm_stops_the_workers_and_their_kernels(project):
    meeting = parallel_project(project, "SIGTERM")
    with pytest.raises(signals.Terminated):
        runner.run("par", out=project / "runs", jobs=2)
    pids = [int(pid) for entry in meeting.iterdir() for pid in entry.name.split("-")]
    assert len(pids) == 4
    deadline = time.monotonic() + 60  # a safety net: they are gone when run returns
    while any(map(running, pids)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(map(running, pids)), "no worker or kernel outlives the run"
    for name in ("00_a", "01_b"):
        assert json.loads((project / "runs" / f"{name}.metrics.json").read_text())["status"] == "interrupted"


def test_ctrl_c_of_a_parallel_run_prints_no_kernel_traceback(project, capfd):
    parallel_project(project, "SIGINT")
    with pytest.raises(KeyboardInterrupt):
        runner.run("par", out=project / "runs", jobs=2)
    err = capfd.readouterr().err
    assert "Traceback" not in err and "ZMQError" not in err and "Kernel died" not in err, err


# --------------------------------------------------------------------------- 10. a .py and .ipynb that disagree
def paired(project, number="00", change=None, newer="ipynb"):
    """Write the .ipynb of notebook ``number`` from its .py, changed by ``change(nb)``, the
    ``newer`` of the two written last."""
    source = next((project / "notebooks").glob(f"{number}_*.py"))
    nb = jupytext.read(source)
    if change is not None:
        change(nb)
    nbformat.write(nb, source.with_suffix(".ipynb"))
    stamp = source.stat().st_mtime_ns
    os.utime(source.with_suffix(".ipynb"), ns=(stamp + (10**9 if newer == "ipynb" else -(10**9)),) * 2)
    return source


def add_cell(nb):
    nb.cells.insert(2, nbformat.v4.new_code_cell("x = x + 1  # added in Jupyter, not in the .py"))


def test_reproduce_refuses_an_ipynb_with_cells_its_py_lacks(project, capsys):
    source = paired(project, change=add_cell)
    assert main(["reproduce", "--profile", "good", "--out", str(project / "runs")]) == 2
    err = one_line_error(capsys, f"{source.with_suffix('.ipynb')} has changes", "1 cell only in the .ipynb",
                         f"jupytext --sync {source.with_suffix('.ipynb')}")
    assert "[00]" not in capsys.readouterr().out and not (project / "runs").exists(), err
    paired(project, change=add_cell, newer="py")  # the .py edited since: it is what runs
    assert [j.number for j in profiles.plan("good")] == ["00", "01"]
    assert pairs.main([str(source)]) == 0, "make notebooks rebuilds a stale .ipynb"
    paired(project, change=add_cell, newer="ipynb")
    assert pairs.main([str(source)]) == 2, "make notebooks stops before deleting the cell"


def test_student_keep_outputs_refuses_a_drifted_ipynb(project, capsys):
    def untag(nb):
        nb.cells[-1].metadata["tags"] = []  # a solution tag removed in the .ipynb only

    paired(project, change=untag, newer="py")
    out = project / "handout"
    assert main(["student", "--out", str(out), "--keep-outputs"]) == 2
    one_line_error(capsys, "older than 00_ok.py", "make notebooks")
    assert not out.exists()
    assert main(["student", "--out", str(out)]) == 0, "without --keep-outputs the copies come from the .py"


# --------------------------------------------------------------------------- 11. reproduce checks before it starts
@pytest.mark.parametrize("value, problem", [('"3"', "'3' is not a whole number"), ("2.5", "2.5 is not a whole number"),
                                            ("-2", "-2 is below 0"), ("true", "True is not a whole number")])
def test_a_profile_value_of_the_wrong_type_or_range_is_refused(project, capsys, value, problem):
    (project / "profiles" / "bad.yaml").write_text(f"defaults: {{x: {value}}}\n")
    assert main(["reproduce", "--profile", "bad", "--out", str(project / "runs")]) == 2
    one_line_error(capsys, "x for notebook 00 (00_ok.py)", problem, "its default is 1")
    assert not (project / "runs").exists(), "refused before anything ran"


def test_counts_must_be_positive_and_named_values_pass(project):
    (project / "notebooks" / "02_counts.py").write_text(HEADER + '''# %% tags=["parameters"]
epochs = 3
pretrained = False  # True: ImageNet weights; auto: them when available
finetune_lr = None  # None: lr
seeds = [0]
''')
    (project / "profiles" / "counts.yaml").write_text('notebooks: {"02": {epochs: 0}}\n')
    with pytest.raises(profiles.ReproduceError, match="0 is below 1"):
        profiles.plan("counts")
    (project / "profiles" / "counts.yaml").write_text(
        'notebooks: {"02": {epochs: 2, pretrained: auto, finetune_lr: 0.01, seeds: [0, 1]}}\n')
    assert profiles.plan("counts", only=["02"])[0].parameters["pretrained"] == "auto"
    (project / "profiles" / "counts.yaml").write_text('notebooks: {"02": {seeds: [0, 1.5]}}\n')
    with pytest.raises(profiles.ReproduceError, match="1.5 is not a whole number"):
        profiles.plan("counts")


@pytest.mark.parametrize("flags, named", [
    (["--data-root", "/no/such/folder"], "--data-root: dataset folder /no/such/folder does not exist"),
    (["--kernel", "no-such-kernel"], "--kernel: no Jupyter kernel named 'no-such-kernel'; installed:"),
])
def test_a_data_root_typo_or_an_unknown_kernel_is_reported_once_before_any_notebook(project, capsys, flags, named):
    assert main(["reproduce", "--profile", "good", "--out", str(project / "runs"), *flags]) == 2
    one_line_error(capsys, named)
    assert "[00]" not in capsys.readouterr().out and not (project / "runs").exists()
