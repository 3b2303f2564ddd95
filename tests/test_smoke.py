"""reproduce --smoke: a profile's GPU code path on the CPU at tiny sizes, and its GPU budget checked."""

import json
import os

import pytest

from casn_lite.tooling import budget, runner, smoke
from casn_lite.tooling.cli import main

from .test_reproduce import HEADER, make_project

TRAINS = HEADER + """# %% tags=["parameters"]
train_ids = 48
test_ids = 48
cameras = 4
images_per_camera = 4
height = 64
width = 32
batch_size = 32
seeds = [0]
epochs = 2
results_dir = "results"
runtime = {}

# %%
import os
import torch
from casn_lite import engine

machine = engine.Runtime.from_parameters(runtime)
seen = {}

def loss_fn(model, batch, device, progress=0.0):
    seen["autocast"] = torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
    seen["channels_last"] = model[0].weight.is_contiguous(memory_format=torch.channels_last)
    loss = model(batch["image"]).float().mean(dim=(1, 2, 3)).pow(2).mean()
    return loss, {}

model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3))
batches = [{"image": torch.randn(2, 3, 8, 4)} for _ in range(3)]
history = engine.fit(model, batches, engine.TrainConfig(epochs=epochs, progress=False, runtime=machine), loss_fn)

# %% tags=["metrics"]
from IPython.display import JSON, display
display(JSON({**seen, "epochs_trained": len(history), "in_memory": machine.in_memory is True,
              "start_cache": os.environ.get("CASN_LITE_CACHE"),
              "train_ids": train_ids, "height": height, "width": width, "seeds": seeds,
              "results_dir": results_dir}))
"""


@pytest.fixture
def project(tmp_path, monkeypatch):
    root = make_project(tmp_path, monkeypatch)
    for name in ("00_ok.py", "01_fails.py"):
        (root / "notebooks" / name).unlink()
    (root / "notebooks" / "01_trains.py").write_text(TRAINS)  # 01: the budget counts one IDE fit of `epochs`
    (root / "profiles" / "big.yaml").write_text(
        "defaults: {train_ids: 96, batch_size: 64, height: 256, width: 128}\n"
        'notebooks: {"01": {seeds: [0, 1, 2], epochs: 5}}\n')
    return root


def test_smoke_takes_the_gpu_branches_on_tiny_data_and_checks_the_gpu_budget(project, capsys):
    out = project / "runs"
    (result,) = runner.run("big", out=out, smoke=True)
    assert result["status"] == "ok", result
    m = result["metrics"]
    assert m["autocast"] and m["channels_last"] and m["in_memory"], "the GPU's branches, taken on the CPU"
    assert m["epochs_trained"] == 1, "one epoch per fit"
    assert m["start_cache"] == str((out / "start-cache").resolve()), "the smoke run's own IDE starts"
    assert "CASN_LITE_CACHE" not in os.environ or os.environ["CASN_LITE_CACHE"] != m["start_cache"]
    assert (m["train_ids"], m["height"], m["width"]) == (8, 64, 32)
    assert m["seeds"] == [0, 1] and m["results_dir"] is None
    (record,) = [json.loads(line) for line in (out / "smoke-steps.jsonl").read_text().splitlines()]
    assert record["full_epochs"] == 5 and record["steps_per_epoch"] == 3
    assert (record["ia"], record["sa"]) == (False, False)
    estimate = json.loads((out / "gpu-estimate.json").read_text())
    (part,) = estimate["parts"]
    # 5 epochs of 96 identities, each in 3 of 4 cameras on average, 4 images per camera, at 256 x 128
    assert part["training"] == pytest.approx(5 * 96 * 3 * 4 / budget.IDE_IMAGES_PER_S)
    assert estimate["plan_mismatches"] == [], "the budget counts the fit the notebook made"
    printed = capsys.readouterr().out
    assert "GPU budget of `reproduce --profile big`" in printed
    assert "the smoke run trained what the budget counts" in printed


def test_smoke_inputs_shrink_but_pcb_keeps_its_six_stripes():
    names = {"height", "width", "arch"}
    assert smoke_sizes({"height": 256, "width": 128}, names) == (64, 32)
    assert smoke_sizes({"height": 96, "width": 32, "arch": "ide"}, names) == (32, 16)
    assert smoke_sizes({"height": 96, "width": 32, "arch": "pcb"}, names) == (96, 16)


def smoke_sizes(parameters: dict, names: set[str]) -> tuple[int, int]:
    small = smoke.smoke_parameters(parameters, names, "steps.jsonl", "01")
    return small["height"], small["width"]


def test_a_smoke_run_takes_the_gpu_branches_the_profile_leaves_to_a_gpu():
    """The profile's runtime, with "cuda" taken on the CPU; what the profile turned off stays off."""
    assert smoke.smoke_runtime({}, "log.jsonl", "04") == {
        "amp": "always", "channels_last": "always", "in_memory": True, "max_epochs": 1, "step_log": "log.jsonl",
        "label": "04"}
    kept = smoke.smoke_runtime({"amp": "never", "in_memory": False}, "log.jsonl", "04")
    assert (kept["amp"], kept["channels_last"], kept["in_memory"]) == ("never", "always", False)


def test_smoke_never_skips_and_writes_beside_the_real_run(project, monkeypatch):
    """Notebooks are not executed here (the test above runs them): a fake records the calls
    and leaves the finished record a real run would skip on."""
    assert runner.default_out("gpu", smoke=True).name == "gpu-smoke"
    executed = []

    def fake_execute(job, out, kernel, cwd):
        executed.append(job.source.stem)
        result = {"notebook": job.source.stem, "parameters": job.parameters, "status": "ok", "seconds": 0.0,
                  "metrics": {}}
        (out / f"{job.source.stem}.metrics.json").write_text(json.dumps(result))
        return result

    monkeypatch.setattr(runner, "_execute", fake_execute)
    out = project / "runs"
    runner.run("big", out=out, smoke=True)
    first = list(executed)
    assert first, "the smoke run executed the notebooks"
    runner.run("big", out=out, smoke=True)
    assert executed == first + first, "a smoke run always runs, even over finished records"
    runner.run("big", out=out)  # the real run skips what finished with the same parameters...
    assert len(executed) == 3 * len(first), "...and smoke parameters are not the real ones"


@pytest.mark.skipif(not os.environ.get("CASN_LITE_SMOKE"), reason="minutes: set CASN_LITE_SMOKE=1 to run "
                    "the gpu profile's notebooks on the CPU")
@pytest.mark.parametrize("arch", [None, "pcb"])
def test_the_gpu_profile_smoke_runs_every_notebook(tmp_path, arch, capsys):
    assert main(["reproduce", "--profile", "gpu", "--smoke", "--jobs", "2", "--out", str(tmp_path / "run"),
                 *(["--arch", arch] if arch else [])]) == 0, capsys.readouterr().out[-3000:]
    assert "GPU budget of `reproduce --profile gpu" in capsys.readouterr().out


def test_a_profile_runtime_with_an_unknown_setting_is_refused_before_anything_runs(project):
    from casn_lite.tooling.profiles import ReproduceError

    (project / "profiles" / "odd.yaml").write_text("defaults: {runtime: {ampp: always}}\n")
    with pytest.raises(ReproduceError, match="runtime for notebook 01.*unknown setting.*ampp"):
        runner.run("odd", out=project / "runs")
    (project / "profiles" / "odd.yaml").write_text("defaults: {runtime: {amp: bf16}}\n")
    with pytest.raises(ReproduceError, match="choose one of"):
        runner.run("odd", out=project / "runs")
