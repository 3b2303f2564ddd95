"""Issue 12: no silent wrong results and no lost data (one section per finding)."""

import dataclasses
import json
import os
import sys
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from casn_lite.data import (
    DatasetLayoutError,
    IdentitySampler,
    ImageDataset,
    ImageReadError,
    build_transforms,
    load_dataset,
    read_image,
    synth,
)
from casn_lite.engine import CheckpointMismatch, TrainConfig, evaluate, fit, seed_everything
from casn_lite.evaluation import evaluate_ranking, pairwise_distance
from casn_lite.inference import rank_gallery
from casn_lite.models import build_model, load_checkpoint, save_checkpoint
from casn_lite.tooling import profiles, runner
from casn_lite.tooling.cli import main

from .support import TINY, run_example
from .test_reproduce import HEADER, OK, make_project

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


# --------------------------------------------------------------------------- 1. resume (fit)
def tiny_run(root, seed=0, samples=None):
    """A model and a loader as a notebook builds them: seeded, on the tiny set."""
    seed_everything(seed)
    data = load_dataset("synthpeople", root)
    train = ImageDataset(samples or data.train, build_transforms(32, 16, train=True, pad=2))
    loader = DataLoader(train, batch_size=8, sampler=IdentitySampler(train.pids, 8, 2, seed=seed), drop_last=True)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 16, data.num_train_pids))
    return model, loader


def linear_loss(model, batch, device, progress=0.0):
    """Cross-entropy of a plain classifier: the cheapest loss fit can train."""
    loss = torch.nn.functional.cross_entropy(model(batch["image"]), batch["pid"])
    return loss, {"ide": loss.item()}


def settings(ckpt, **changes):
    return TrainConfig(**{"epochs": 1, "optimizer": "adam", "lr": 1e-3, "progress": False,
                          "checkpoint_dir": str(ckpt), "resume": True, **changes})


def test_resume_with_the_same_run_continues_it(tiny_synth, tmp_path):
    model, loader = tiny_run(tiny_synth[0])
    first = fit(model, loader, settings(tmp_path), linear_loss)
    model, loader = tiny_run(tiny_synth[0])
    assert fit(model, loader, settings(tmp_path, desc="a new label", progress=True), linear_loss) == first


@pytest.mark.parametrize("change, named", [
    ({"lr": 2e-3}, "lr: 0.001 -> 0.002"),
    ({"epochs": 2}, "epochs: 1 -> 2"),
    ({"extra": {"dataset": "other"}}, "extra"),
])
def test_resume_refuses_other_settings(tiny_synth, tmp_path, change, named):
    model, loader = tiny_run(tiny_synth[0])
    fit(model, loader, settings(tmp_path), linear_loss)
    model, loader = tiny_run(tiny_synth[0])
    with pytest.raises(CheckpointMismatch, match=named) as err:
        fit(model, loader, settings(tmp_path, **change), linear_loss)
    assert "--restart" in str(err.value) and str(tmp_path) in str(err.value)


def test_resume_refuses_another_seed_or_other_data(tiny_synth, tmp_path):
    model, loader = tiny_run(tiny_synth[0])
    fit(model, loader, settings(tmp_path), linear_loss)
    model, loader = tiny_run(tiny_synth[0], seed=1)
    with pytest.raises(CheckpointMismatch, match="starting weights"):
        fit(model, loader, settings(tmp_path), linear_loss)
    data = load_dataset("synthpeople", tiny_synth[0])
    model, loader = tiny_run(tiny_synth[0], samples=data.train[:-2])
    with pytest.raises(CheckpointMismatch, match="training images"):
        fit(model, loader, settings(tmp_path), linear_loss)


def test_resume_false_starts_fresh_over_a_mismatching_checkpoint(tiny_synth, tmp_path):
    model, loader = tiny_run(tiny_synth[0])
    fit(model, loader, settings(tmp_path), linear_loss)
    model, loader = tiny_run(tiny_synth[0])
    history = fit(model, loader, settings(tmp_path, lr=2e-3, resume=False), linear_loss)
    model, loader = tiny_run(tiny_synth[0])
    assert fit(model, loader, settings(tmp_path, lr=2e-3), linear_loss) == history, "the new run is the one recorded"


def test_a_checkpoint_from_before_identities_is_checked_on_its_config(tiny_synth, tmp_path):
    model, loader = tiny_run(tiny_synth[0])
    first = fit(model, loader, settings(tmp_path), linear_loss)
    state = torch.load(tmp_path / "last.pt", weights_only=False)
    del state["identity"]  # as saved by the earlier version
    torch.save(state, tmp_path / "last.pt")
    model, loader = tiny_run(tiny_synth[0])
    with pytest.raises(CheckpointMismatch, match="lr: 0.001 -> 0.002"):
        fit(model, loader, settings(tmp_path, lr=2e-3), linear_loss)
    assert fit(model, loader, settings(tmp_path), linear_loss) == first


def test_a_truncated_checkpoint_is_set_aside_and_training_starts_again(tiny_synth, tmp_path):
    model, loader = tiny_run(tiny_synth[0])
    fit(model, loader, settings(tmp_path), linear_loss)
    last = tmp_path / "last.pt"
    broken = last.read_bytes()[:1000]
    last.write_bytes(broken)
    model, loader = tiny_run(tiny_synth[0])
    with pytest.warns(UserWarning, match="cannot be read"):
        history = fit(model, loader, settings(tmp_path), linear_loss)
    assert len(history) == 1 and last.is_file()
    assert (tmp_path / "last.pt.unreadable").read_bytes() == broken, "the broken file is kept, aside"


# --------------------------------------------------------------------------- reproduce (1, 7, 8, 10)
@pytest.fixture
def project(tmp_path, monkeypatch):
    return make_project(tmp_path, monkeypatch)


REMEMBERS = HEADER + """# %% tags=["parameters"]
checkpoint_dir = None

# %%
from pathlib import Path
last = Path(checkpoint_dir) / "last.pt"
found = last.is_file()
last.parent.mkdir(parents=True, exist_ok=True)
last.write_text("trained")

# %% tags=["metrics"]
from IPython.display import JSON, display
display(JSON({"found_a_checkpoint": found}))
"""


def test_restart_trains_again_instead_of_resuming(project):
    (project / "notebooks" / "02_remembers.py").write_text(REMEMBERS)
    out = project / "runs"
    assert runner.run("good", only=["02"], out=out)[0]["metrics"] == {"found_a_checkpoint": False}
    again = runner.run("good", only=["02"], out=out, restart=True)
    assert again[0]["metrics"] == {"found_a_checkpoint": False}, "--restart removed the old checkpoints"


def test_a_damaged_record_runs_the_notebook_again(project):
    out = project / "runs"
    runner.run("good", only=["00"], out=out)
    (out / "00_ok.metrics.json").write_text('{"status": "o')
    assert runner.run("good", only=["00"], out=out)[0]["status"] == "ok"


DIES = HEADER + """# %% tags=["parameters"]
x = 1

# %%
import os
os._exit(1)
"""


def test_a_dead_kernel_is_a_failed_notebook_and_the_others_still_run(project, capsys):
    (project / "notebooks" / "01_fails.py").write_text(DIES)
    (project / "notebooks" / "02_ok.py").write_text(OK)
    results = runner.run("good", out=project / "runs")
    assert [r["status"] for r in results] == ["ok", "failed", "ok"]
    assert "DeadKernelError" in results[1]["error"]
    table = capsys.readouterr().out
    assert "01_fails" in table and "failed: DeadKernelError" in table


INTERRUPTS = HEADER + """# %% tags=["parameters"]
x = 1
runner = 0

# %%
import os, signal, time
os.kill(runner, signal.SIGINT)  # the user presses Ctrl-C in the terminal of reproduce
time.sleep(120)  # the runner's own handler (runner.run) stops this cell: no race with the signal

# %%
y = 2
"""


def test_an_interrupted_notebook_is_marked_interrupted(project):
    (project / "notebooks" / "01_fails.py").write_text(INTERRUPTS)
    # the runner's process id as a parameter: not the kernel's parent, which depends on how it was started
    (project / "profiles" / "runner.yaml").write_text(f"defaults: {{runner: {os.getpid()}}}\n")
    out = project / "runs"
    with pytest.raises(KeyboardInterrupt):
        runner.run("runner", only=["01"], out=out)
    nb = nbformat.read(out / "01_fails.ipynb", as_version=4)
    assert nb.metadata.papermill["status"] == "interrupted"
    assert (out / "01_fails.ipynb").read_text().endswith("}\n"), "written whole, as nbformat.write would"
    statuses = [c.metadata.papermill["status"] for c in nb.cells if c.cell_type == "code"]
    assert "interrupted" in statuses and statuses[-1] == "pending", statuses
    assert json.loads((out / "01_fails.metrics.json").read_text())["status"] == "interrupted"


def test_a_second_run_into_the_same_folder_is_refused(project):
    out = project / "runs"
    with runner.lock_folder(out), pytest.raises(ValueError, match="another reproduce run"):
        runner.run("good", only=["00"], out=out)
    assert runner.run("good", only=["00"], out=out)[0]["status"] == "ok", "the lock goes with its run"


@pytest.mark.parametrize("text, message", [
    ("defaults: {x: 1\n", "not valid YAML"),
    ("defualts: {x: 1}\n", "unknown section 'defualts'"),
    ("real_data: {default: {x: 1}}\n", "unknown section 'real_data.default'"),
    ("arch: {pcbb: {defaults: {x: 1}}}\n", "unknown section 'arch.pcbb'"),
    ("- x\n", "a mapping"),
])
def test_a_malformed_profile_is_named(project, text, message):
    (project / "profiles" / "bad.yaml").write_text(text)
    with pytest.raises(profiles.ReproduceError, match=message):
        profiles.plan("bad")


@pytest.mark.parametrize("argv, message", [
    (["--jobs", "0"], "--jobs must be at least 1"),
    (["--jobs", "-2"], "--jobs must be at least 1"),
    (["--only", ""], "--only"),
    (["--only", "00,"], "--only"),
])
def test_reproduce_cli_refuses_bad_options(project, capsys, argv, message):
    assert main(["reproduce", "--profile", "good", "--out", str(project / "runs"), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_reproduce_cli_refuses_an_out_that_is_a_file_or_read_only(project, capsys, monkeypatch):
    afile = project / "afile"
    afile.write_text("mine")
    assert main(["reproduce", "--profile", "good", "--out", str(afile)]) == 2
    assert "is a file" in capsys.readouterr().err and afile.read_text() == "mine"
    locked = project / "locked"

    def refuse(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(type(locked), "mkdir", refuse)  # a read-only folder, even for root
    assert main(["reproduce", "--profile", "good", "--out", str(locked / "runs")]) == 2
    err = capsys.readouterr().err
    assert "cannot write" in err and "Permission denied" in err and "Traceback" not in err


def test_reproduce_without_the_notebook_extras_says_what_to_install(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "papermill", None)  # import papermill fails
    monkeypatch.delitem(sys.modules, "casn_lite.tooling.runner")
    assert main(["reproduce", "--profile", "ci"]) == 2
    err = capsys.readouterr().err
    assert "pip install -e '.[notebooks]'" in err and "papermill" in err


def test_kernels_do_not_print_their_tcp_warning(project, capfd):
    runner.run("good", only=["00"], out=project / "runs")
    assert "without encryption" not in capfd.readouterr().err


# --------------------------------------------------------------------------- 1. resume (train)
def test_train_refuses_to_resume_with_another_lr_and_restart_trains_again(tiny_synth, tmp_path, capsys):
    out = tmp_path / "run"
    command = ["train", "--variant", "IDE", "--data-root", str(tiny_synth[0]), "--backbone", "resnet18",
               "--height", "32", "--width", "16", "--epochs", "1", "--batch-size", "8", "--num-instances", "2",
               "--workers", "0", "--lr", "1e-3", "--out", str(out), "--quiet"]
    assert main(command) == 0
    before = (out / "checkpoints" / "last.pt").read_bytes()
    capsys.readouterr()
    assert main([*command[:-4], "2e-3", "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "lr: 0.001 -> 0.002" in err and "--restart" in err and "Traceback" not in err
    assert (out / "checkpoints" / "last.pt").read_bytes() == before, "the old run is left as it was"
    assert main([*command[:-4], "2e-3", "--out", str(out), "--quiet", "--restart"]) == 0
    assert json.loads((out / "metrics.json").read_text())["final_loss"] > 0


# --------------------------------------------------------------------------- 9. checkpoints run no code
class Planted:
    """Unpickled, it creates a file: what a crafted checkpoint could do with a shell command."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


@pytest.fixture
def exported(tmp_path):
    torch.manual_seed(0)
    model = build_model("ide", "resnet18", num_classes=3, embed_dim=8)
    path = save_checkpoint(model, tmp_path / "model.pt", (64, 32), dataset="SynthPeople",
                           rank1=np.float64(0.5), cmc=np.array([0.5, 1.0]), seeds=(0, 1))
    return model, path


def test_a_checkpoint_holds_plain_values_and_loads_without_pickled_code(exported):
    model, path = exported
    loaded, info = load_checkpoint(path)
    assert info["input_size"] == (64, 32)
    assert info["info"] == {"dataset": "SynthPeople", "rank1": 0.5, "cmc": [0.5, 1.0], "seeds": [0, 1]}
    for a, b in zip(model.state_dict().values(), loaded.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    torch.load(path, weights_only=True)  # what anyone can check: plain values and tensors only


def test_a_crafted_checkpoint_runs_no_code(exported, tmp_path):
    marker = tmp_path / "pwned"
    state = torch.load(exported[1], weights_only=True)
    state["info"]["note"] = Planted(marker)
    torch.save(state, tmp_path / "crafted.pt")
    with pytest.raises(ValueError, match="refused"):
        load_checkpoint(tmp_path / "crafted.pt")
    assert not marker.exists(), "unpickling ran code from the file"


def test_a_truncated_or_foreign_checkpoint_is_named(exported, tmp_path):
    _, path = exported
    (tmp_path / "cut.pt").write_bytes(path.read_bytes()[:5000])
    with pytest.raises(ValueError, match="corrupt or truncated"):
        load_checkpoint(tmp_path / "cut.pt")
    state = torch.load(path, weights_only=True)
    state["build_args"]["num_classes"] = 5
    torch.save(state, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="do not match the architecture"):
        load_checkpoint(tmp_path / "other.pt")
    state["build_args"]["layers"] = 5
    torch.save(state, tmp_path / "odd.pt")
    with pytest.raises(ValueError, match="cannot rebuild"):
        load_checkpoint(tmp_path / "odd.pt")


def test_rank_gallery_refuses_a_crafted_checkpoint_in_one_line(exported, tmp_path, capsys):
    marker = tmp_path / "pwned"
    state = torch.load(exported[1], weights_only=True)
    state["info"]["note"] = Planted(marker)
    torch.save(state, tmp_path / "crafted.pt")
    (tmp_path / "gallery").mkdir()
    # in this process: an exception that main() does not turn into its one-line error fails the test
    assert run_example(EXAMPLES / "rank_gallery.py", tmp_path / "crafted.pt", tmp_path / "q.jpg",
                       tmp_path / "gallery") == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert not marker.exists()


def test_rank_gallery_refuses_a_negative_topk(exported, tiny_synth, tmp_path, capsys):
    root = tiny_synth[0]
    query = next((root / "query").iterdir())
    assert run_example(EXAMPLES / "rank_gallery.py", exported[1], query, root / "bounding_box_test",
                       "--topk", "-1") == 2
    assert "--topk" in capsys.readouterr().err
    with pytest.raises(ValueError, match="topk"):
        rank_gallery(exported[0], (64, 32), query, root / "bounding_box_test", topk=0)


# --------------------------------------------------------------------------- 2. NaN never scores, 4. labels
def small_problem(seed=0, num_q=12, num_g=40, ids=6):
    rng = np.random.default_rng(seed)
    q_pids, g_pids = rng.integers(1, ids + 1, num_q), rng.integers(1, ids + 1, num_g)
    q_cams, g_cams = np.zeros(num_q, int), np.ones(num_g, int)
    return rng.random((num_q, num_g)), q_pids, g_pids, q_cams, g_cams


@pytest.mark.parametrize("where", ["all", "one row", "one cell", "inf"])
def test_non_finite_distances_are_refused(where):
    dist, *labels = small_problem()
    if where == "all":
        dist[:] = np.nan
    elif where == "one row":
        dist[3] = np.nan
    elif where == "one cell":
        dist[3, 5] = np.nan
    else:
        dist[0, 0] = np.inf
    with pytest.raises(ValueError, match="not finite"):
        evaluate_ranking(dist, *labels)


def test_non_finite_features_are_refused():
    q, g = torch.randn(4, 8), torch.randn(6, 8)
    q[1, 2] = float("nan")
    for metric in ("cosine", "euclidean"):
        with pytest.raises(ValueError, match="query features .* not finite"):
            pairwise_distance(q, g, metric)
        with pytest.raises(ValueError, match="gallery features .* not finite"):
            pairwise_distance(g, q, metric)


def test_a_model_with_nan_weights_does_not_evaluate(tiny_synth):
    data = load_dataset("synthpeople", tiny_synth[0])
    tf = build_transforms(64, 32)
    query, gallery = (DataLoader(ImageDataset(s, tf), 64) for s in (data.query, data.gallery))
    model = build_model("ide", "resnet18", num_classes=3, embed_dim=8)
    with torch.no_grad():
        model.trunk[0].weight[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="not finite"):
        evaluate(model, query, gallery, torch.device("cpu"))


def test_fractional_pids_are_refused_and_whole_float_pids_work():
    dist, q_pids, g_pids, q_cams, g_cams = small_problem()
    expected = evaluate_ranking(dist, q_pids, g_pids, q_cams, g_cams)
    as_float = evaluate_ranking(dist, q_pids.astype(float), g_pids.astype(float), q_cams, g_cams)
    assert as_float["mAP"] == expected["mAP"]
    fractional = g_pids.astype(float)
    fractional[0] += 0.2
    with pytest.raises(ValueError, match="g_pids .* whole numbers"):
        evaluate_ranking(dist, q_pids, fractional, q_cams, g_cams)


def test_integer_and_bool_distances():
    dist, *labels = small_problem()
    whole = (dist * 1000).astype(np.int64)
    assert evaluate_ranking(whole, *labels)["mAP"] == evaluate_ranking(whole.astype(float), *labels)["mAP"]
    assert evaluate_ranking(whole.astype(np.uint8), *labels)["num_valid_queries"] > 0
    with pytest.raises(ValueError, match="bool"):
        evaluate_ranking(dist > 0.5, *labels)


def test_euclidean_distance_is_exact_for_features_far_from_the_origin():
    rng = np.random.default_rng(0)
    q = 1e4 + rng.standard_normal((5, 256))
    g = 1e4 + rng.standard_normal((7, 256))
    exact = ((q[:, None, :] - g[None, :, :]) ** 2).sum(-1)  # float64, the direct way
    got = pairwise_distance(torch.tensor(q, dtype=torch.float32), torch.tensor(g, dtype=torch.float32),
                            "euclidean").double().numpy()
    np.testing.assert_allclose(got, exact, rtol=1e-3)


@pytest.mark.parametrize("option", [{"max_rank": 0}, {"max_rank": -3}, {"chunk_size": 0}])
def test_evaluation_options_must_be_positive(option):
    dist, *labels = small_problem()
    with pytest.raises(ValueError, match=f"{next(iter(option))} must be at least 1"):
        evaluate_ranking(dist, *labels, **option)


# --------------------------------------------------------------------------- 3, 6. data synth
def listing(root):
    """Every file under root with its size: to tell that nothing changed."""
    return {str(p.relative_to(root)): p.stat().st_size for p in sorted(root.rglob("*")) if p.is_file()}


def interrupt_after(monkeypatch, calls: int):
    """Make generation stop with Ctrl-C when it draws batch number ``calls + 1``."""
    real, seen = synth.render_batch, []

    def render(*args, **kwargs):
        seen.append(1)
        if len(seen) > calls:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(synth, "render_batch", render)


def test_an_interrupted_first_generation_leaves_nothing_that_loads(tmp_path, monkeypatch):
    out = tmp_path / "set"
    interrupt_after(monkeypatch, 1)  # train written, stopped in query
    with pytest.raises(KeyboardInterrupt):
        synth.generate(out, TINY, progress=False)
    assert not out.exists() or not any(out.iterdir())
    assert [p.name for p in tmp_path.iterdir()] in (["set"], []), "no half-written folder left beside it"
    with pytest.raises(DatasetLayoutError):
        load_dataset("auto", out)


def test_an_interrupted_regeneration_keeps_the_previous_set(tmp_path, monkeypatch):
    out = tmp_path / "set"
    synth.generate(out, TINY, progress=False)
    before = listing(out)
    interrupt_after(monkeypatch, 2)  # train and query of seed 4 drawn, stopped in the gallery
    with pytest.raises(KeyboardInterrupt):
        synth.generate(out, dataclasses.replace(TINY, seed=4), progress=False)
    assert listing(out) == before
    assert json.loads((out / "meta.json").read_text())["seed"] == TINY.seed


def test_a_half_written_set_of_the_old_generator_is_refused(tmp_path):
    out = tmp_path / "set"
    synth.generate(out, TINY, progress=False)
    gallery = sorted((out / "bounding_box_test").iterdir())
    for p in gallery[len(gallery) // 2:]:
        p.unlink()  # killed while writing the gallery, with an older meta.json beside it
    for name in ("auto", "synthpeople"):
        with pytest.raises(DatasetLayoutError, match="incomplete"):
            load_dataset(name, out)
    (out / "meta.json").unlink()  # killed before any meta.json: it would load as Market-1501
    with pytest.raises(DatasetLayoutError, match="incomplete SynthPeople"):
        load_dataset("auto", out)
    synth.generate(out, TINY, progress=False)  # and a new run replaces it without help
    assert load_dataset("auto", out).name == "SynthPeople"


def test_loaders_and_ensure_regenerate_an_incomplete_set(tmp_path):
    out = tmp_path / "set"
    synth.generate(out, TINY, progress=False)
    next((out / "query").iterdir()).unlink()
    synth.ensure_synthpeople(out, TINY, progress=False)
    assert load_dataset("synthpeople", out).name == "SynthPeople"


def synth_cli(out, *extra):
    return main(["data", "synth", "--out", str(out), "--train-ids", "8", "--test-ids", "7", "--cameras", "3",
                 "--images-per-camera", "2", "--height", "64", "--width", "32", "--quiet", *extra])


@pytest.mark.parametrize("flags, named", [
    (["--seed", "-1"], "--seed"),
    (["--height", "100000", "--width", "100000"], "--height"),
    (["--cameras", "12"], "--cameras"),
    (["--tag-moves"], "--tag-moves moves the positive control's name tag: set --control too"),
    (["--tag-scale", "2"], "--tag-scale sizes the positive control's name tag: set --control too"),
])
def test_synth_validates_before_touching_the_previous_set(tmp_path, capsys, flags, named):
    out = tmp_path / "set"
    assert synth_cli(out) == 0
    before = listing(out)
    capsys.readouterr()
    assert synth_cli(out, *flags) == 2
    err = capsys.readouterr().err
    assert named in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert listing(out) == before


def test_synth_ctrl_c_prints_one_line(tmp_path, capsys, monkeypatch):
    interrupt_after(monkeypatch, 0)
    assert synth_cli(tmp_path / "set") == 130
    err = capsys.readouterr().err
    assert err.startswith("interrupted:") and len(err.strip().splitlines()) == 1


def test_synth_refuses_an_out_that_is_a_file_or_read_only(tmp_path, capsys, monkeypatch):
    afile = tmp_path / "afile"
    afile.write_text("mine")
    assert synth_cli(afile) == 2
    assert "is a file" in capsys.readouterr().err and afile.read_text() == "mine"

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(tmp_path / "ro"))

    monkeypatch.setattr(synth.tempfile, "mkdtemp", refuse)  # a read-only folder, even for root
    assert synth_cli(tmp_path / "ro" / "set") == 2
    err = capsys.readouterr().err
    assert "cannot write" in err and "Traceback" not in err


# --------------------------------------------------------------------------- 5. student copies
def test_student_refuses_the_notebooks_folder(project, capsys):
    executed = project / "notebooks" / "00_ok.ipynb"
    executed.write_text("the executed notebook, with outputs")
    before = listing(project / "notebooks")
    for out in (project / "notebooks", project / "notebooks" / ".." / "notebooks"):
        assert main(["student", "--out", str(out), "--force"]) == 2
        err = capsys.readouterr().err
        assert "notebook sources" in err and "Traceback" not in err
    assert listing(project / "notebooks") == before


def test_student_does_not_overwrite_without_force(project, capsys):
    out = project / "handout"
    assert main(["student", "--out", str(out)]) == 0
    mine = out / "01_fails.ipynb"
    mine.write_text("a student's work")
    capsys.readouterr()
    assert main(["student", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "01_fails.ipynb" in err and "--force" in err and "Traceback" not in err
    assert mine.read_text() == "a student's work"
    assert main(["student", "--out", str(out), "--force"]) == 0
    assert nbformat.read(mine, as_version=4).cells


def test_student_refuses_an_out_that_is_a_file(project, capsys):
    afile = project / "afile"
    afile.write_text("mine")
    assert main(["student", "--out", str(afile)]) == 2
    assert "is a file" in capsys.readouterr().err and afile.read_text() == "mine"


# --------------------------------------------------------------------------- 10. images and user datasets
def test_an_image_too_large_to_decode_is_a_read_error(tiny_synth, monkeypatch):
    from PIL import Image

    path = next((tiny_synth[0] / "query").iterdir())
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 64 x 32 pixels: more than twice the limit
    with pytest.raises(ImageReadError, match="too large"):
        read_image(path)


def test_identities_in_both_train_and_test_are_warned_about(tiny_synth, tmp_path):
    import shutil

    root = tmp_path / "mine"
    for split in ("bounding_box_train", "query", "bounding_box_test"):
        shutil.copytree(tiny_synth[0] / split, root / split)
    test_image = sorted((root / "query").iterdir())[0]
    shutil.copy(test_image, root / "bounding_box_train" / test_image.name)  # a test identity in training
    with pytest.warns(UserWarning, match="1 identit.* both"):
        load_dataset("market1501", root)
