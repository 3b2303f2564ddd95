"""The papermill runner: names checked up front, metrics read back, failures reported by name."""

import json

import pytest

from casn_lite.tooling import notebooks, profiles, runner

HEADER = "# ---\n# jupyter:\n#   kernelspec:\n#     display_name: Python 3\n#     language: python\n#     name: python3\n# ---\n\n"
OK = HEADER + """# %% tags=["parameters"]
x = 1
data_root = None

# %%
y = x * 2

# %% tags=["metrics"]
import json
print(json.dumps({"y": y}, indent=1))
"""
FAILS = HEADER + """# %% tags=["parameters"]
x = 1

# %%
raise RuntimeError(f"broken on purpose, x={x}")

# %% tags=["metrics"]
print("never reached")
"""


@pytest.fixture
def project(tmp_path, monkeypatch):
    return make_project(tmp_path, monkeypatch)


def make_project(tmp_path, monkeypatch):
    """Two notebooks (one fails) and four profiles in tmp_path, where the runner looks."""
    nbs, profile_dir = tmp_path / "notebooks", tmp_path / "profiles"
    nbs.mkdir()
    profile_dir.mkdir()
    (nbs / "00_ok.py").write_text(OK)
    (nbs / "01_fails.py").write_text(FAILS)
    (profile_dir / "good.yaml").write_text('defaults: {x: 5}\nnotebooks: {"00": {data_root: null}}\n')
    (profile_dir / "typo.yaml").write_text("defaults: {xx: 5}\n")
    (profile_dir / "wrong_notebook.yaml").write_text('notebooks: {"01": {data_root: null}}\n')
    monkeypatch.setattr(notebooks, "NOTEBOOK_DIR", nbs)
    monkeypatch.setattr(profiles, "PROFILE_DIR", profile_dir)
    return tmp_path


def test_unknown_names_are_refused_with_the_valid_choices(project):
    with pytest.raises(profiles.ReproduceError, match="choose one of: good, typo, wrong_notebook"):
        profiles.plan("nope")
    with pytest.raises(profiles.ReproduceError, match="choose from: 00, 01"):
        profiles.plan("good", only=["02"])
    with pytest.raises(profiles.ReproduceError, match="no notebook has a parameter 'xx'"):
        profiles.plan("typo")
    with pytest.raises(profiles.ReproduceError, match="notebook 01 has no parameter data_root"):
        profiles.plan("wrong_notebook")


def test_profile_parameters_reach_each_notebook_that_has_them(project):
    jobs = {j.number: j.parameters for j in profiles.plan("good")}
    assert jobs["00"] == {"x": 5, "data_root": None}  # the notebook's own entry wins over defaults
    assert jobs["01"] == {"x": 5}  # 01 has no data_root parameter
    jobs = {j.number: j.parameters for j in profiles.plan("good", data_root=str(project))}
    assert jobs["00"] == {"x": 5, "data_root": str(project.resolve())}  # the command line wins


def test_real_data_and_arch_layers(project):
    (project / "profiles" / "layered.yaml").write_text(
        'defaults: {x: 1}\n'
        'real_data: {defaults: {x: 2}}\n'
        'arch: {pcb: {notebooks: {"00": {x: 3}}}}\n')
    (project / "notebooks" / "02_arch.py").write_text(OK.replace("x = 1\n", "x = 1\narch = 'ide'\n"))
    plain = {j.number: j.parameters for j in profiles.plan("layered")}
    assert plain["00"] == {"x": 1}
    real = {j.number: j.parameters for j in profiles.plan("layered", data_root=str(project))}
    assert real["00"]["x"] == 2 and real["00"]["data_root"] == str(project.resolve())
    pcb = profiles.plan("layered", arch="pcb")
    assert [j.number for j in pcb] == ["02"], "with an arch, only notebooks that have one run"
    assert pcb[0].parameters == {"x": 1, "arch": "pcb"}
    both = {j.number: j.parameters for j in profiles.plan("layered", only=["00"], data_root=str(project), arch="pcb")}
    assert both["00"]["x"] == 3, "the arch layer comes last"
    assert runner.default_out("layered", str(project), "pcb").name == f"layered-pcb-{project.name}"
    (project / "profiles" / "bad.yaml").write_text('real_data: {defaults: {nope: 1}}\n')
    with pytest.raises(profiles.ReproduceError, match="real_data: no notebook has a parameter 'nope'"):
        profiles.plan("bad", data_root=str(project))


def test_run_reads_metrics_back_and_reports_a_failing_notebook(project, capsys):
    results = runner.run("good", out=project / "runs")
    ok, failed = results
    assert ok["status"] == "ok" and ok["metrics"] == {"y": 10}
    assert json.loads((project / "runs" / "00_ok.metrics.json").read_text())["metrics"] == {"y": 10}
    assert (project / "runs" / "00_ok.ipynb").is_file()
    assert failed["status"] == "failed" and "broken on purpose, x=5" in failed["error"]
    assert failed["cell"] is not None
    table = capsys.readouterr().out
    assert "01_fails" in table and "failed in cell" in table and "y=10" in table


RESUMABLE = HEADER + """# %% tags=["parameters"]
checkpoint_dir = None
profile = None

# %% tags=["metrics"]
from IPython.display import JSON, display
display(JSON({"checkpoint_dir": checkpoint_dir, "profile": profile}))
"""


def test_a_second_run_skips_finished_notebooks_and_retries_the_rest(project, capsys):
    (project / "notebooks" / "02_resumable.py").write_text(RESUMABLE)
    out = project / "runs"
    first = runner.run("good", out=out)
    assert first[2]["metrics"] == {"checkpoint_dir": str((out / "checkpoints" / "02_resumable").resolve()),
                                   "profile": "good"}
    stamp = (out / "00_ok.ipynb").stat().st_mtime_ns
    capsys.readouterr()
    again = runner.run("good", out=out)
    log = capsys.readouterr().out
    assert "00_ok: finished earlier, skipped" in log and "02_resumable: finished earlier, skipped" in log
    assert "[01] 01_fails" in log, "a failed notebook runs again"
    assert (out / "00_ok.ipynb").stat().st_mtime_ns == stamp
    assert [r["status"] for r in again] == ["ok", "failed", "ok"]
    runner.run("good", out=out, restart=True, only=["00"])
    assert (out / "00_ok.ipynb").stat().st_mtime_ns != stamp


def test_an_edited_notebook_runs_again(project, capsys):
    out = project / "runs"
    runner.run("good", out=out, only=["00"])
    source = project / "notebooks" / "00_ok.py"
    source.write_text(source.read_text().replace("y = x * 2", "y = x * 3"))
    capsys.readouterr()
    again = runner.run("good", out=out, only=["00"])
    assert "skipped" not in capsys.readouterr().out, "the .py changed since its finished run"
    assert again[0]["metrics"] == {"y": 15}


MEETS = HEADER + """# %% tags=["parameters"]
x = 1
meeting = ""

# %%
import os, pathlib, time
here = pathlib.Path(meeting)
(here / str(os.getpid())).touch()
deadline = time.time() + 120
while len(list(here.iterdir())) < 2 and time.time() < deadline:
    time.sleep(0.05)  # wait for the other notebook: it can arrive only if both run at once

# %% tags=["metrics"]
from IPython.display import JSON, display
display(JSON({"met": len(list(here.iterdir())) == 2, "threads": os.environ.get("OMP_NUM_THREADS")}))
"""


def test_jobs_run_notebooks_at_once(project, monkeypatch):
    for name in ("00_ok.py", "01_fails.py"):
        (project / "notebooks" / name).unlink()
    for name in ("00_a.py", "01_b.py"):
        (project / "notebooks" / name).write_text(MEETS)
    (project / "meeting").mkdir()
    (project / "profiles" / "plain.yaml").write_text(f"defaults: {{meeting: '{project / 'meeting'}'}}\n")
    monkeypatch.setattr(runner.os, "cpu_count", lambda: 4)
    a, b = runner.run("plain", out=project / "runs", jobs=2)
    assert a["status"] == b["status"] == "ok"
    ma, mb = a["metrics"], b["metrics"]
    assert ma["met"] and mb["met"], "each notebook saw the other running"
    assert ma["threads"] == mb["threads"] == "2", "each gets its share of the cores"


@pytest.mark.parametrize("profile", profiles.profiles())
def test_every_shipped_profile_plans_every_notebook_and_arch(profile, tmp_path):
    """Each shipped profile, as `reproduce` would run it: plain, on a real dataset folder,
    and for each architecture. A misspelt section, parameter or notebook number is refused
    by plan (check_sections and the parameter check), so a broken profile fails here."""
    every = notebooks.notebooks()
    names = {n: notebooks.parameter_names(source) for n, source in every.items()}
    with_arch = [n for n in every if "arch" in names[n]]
    assert with_arch == ["04", "05"]
    for data_root in (None, tmp_path):
        for arch in (None, "ide", "pcb"):
            jobs = profiles.plan(profile, data_root=None if data_root is None else str(data_root), arch=arch)
            assert [j.number for j in jobs] == (list(every) if arch is None else with_arch)
            for job in jobs:
                assert set(job.parameters) <= names[job.number]
                if data_root is not None and "data_root" in names[job.number]:
                    assert job.parameters["data_root"] == str(tmp_path.resolve())
                if arch is not None:
                    assert job.parameters["arch"] == arch
                if arch == "pcb":  # six stripes of conv5 need an input at least 96 pixels tall
                    assert job.parameters["height"] >= 96, (profile, data_root, job.number)
    with pytest.raises(profiles.ReproduceError, match="unknown arch 'resnet'"):
        profiles.plan(profile, arch="resnet")
