"""benchmarks/gpu_run.sh: the whole GPU run as one command, its steps run on the CPU (--smoke).

What these tests cover: the script's steps in order (set-up, budget, both benchmarks, the
runner's two halves), their exit statuses, the deadline, and what it leaves in $OUT. Not
covered here: the gpu profile's own settings (test_smoke's CASN_LITE_SMOKE test runs them),
the carried wheels (built for the GPU machine's Python 3.12), and a GPU.
"""

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_run.sh"
STEPS = ["setup", "budget", "evaluation-benchmark", "throughput-benchmark", "reproduce", "reproduce-pcb"]


def gpu_run(tmp_path: Path, *args: str, **settings: str) -> subprocess.CompletedProcess:
    """The script from the repository root, everything it writes under tmp_path."""
    env = {**os.environ, "PYTHON": sys.executable, "WORK": str(tmp_path / "work"), "RUNS": str(tmp_path / "runs"),
           "OUT": str(tmp_path / "out"), "WHEELS": str(tmp_path / "no-wheels"), "CASN_LITE_DATA": str(tmp_path / "data"),
           "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", **settings}
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=1800)  # 10 min on an AVX2 CPU was not enough


def steps(out: Path) -> dict[str, str]:
    """steps.tsv as step -> status."""
    rows = [line.split("\t") for line in (out / "steps.tsv").read_text().splitlines()[1:]]
    return {name: status for name, status, _seconds in rows}


def test_without_wheels_the_gpu_run_stops_at_once_with_one_line(tmp_path):
    run = gpu_run(tmp_path)
    assert run.returncode == 2
    assert run.stdout == "" and len(run.stderr.splitlines()) == 1
    assert "no wheels in" in run.stderr and "make gpu-wheels" in run.stderr
    assert not (tmp_path / "out").exists(), "nothing started"


def test_a_failed_step_fails_the_run_and_the_rest_still_run(tmp_path):
    run = gpu_run(tmp_path, "--smoke", PYTHON="false")  # every Python command fails
    assert run.returncode == 1, run.stdout[-2000:]
    assert steps(tmp_path / "out") == dict.fromkeys(STEPS, "1")


def test_steps_past_the_deadline_are_skipped_and_fail_the_run(tmp_path):
    run = gpu_run(tmp_path, "--smoke", DEADLINE="10")  # less than the 20 s kept for writing $OUT
    assert run.returncode == 1, run.stdout[-2000:]
    assert steps(tmp_path / "out") == dict.fromkeys(STEPS, "skipped")
    assert "no time left" in (tmp_path / "out" / "gpu_run.log").read_text()


def test_every_step_runs_in_smoke_mode_and_out_holds_the_records(tmp_path):
    """About two minutes: the ci profile's notebooks 00 and 04 (04 also with PCB) as smoke
    runs, and both benchmarks at tiny sizes."""
    run = gpu_run(tmp_path, "--smoke", PROFILE="ci", ONLY="00,04")
    out = tmp_path / "out"
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert steps(out) == dict.fromkeys(STEPS, "0")
    files = sorted(p.name for p in out.iterdir())
    assert files == ["benchmarks.txt", "gpu_run.log", "metrics.tar.gz", "notebooks.tar.gz", "steps.tsv"]
    assert all(p.is_file() and p.stat().st_size < 16 * 2**20 for p in out.iterdir())
    benchmarks = (out / "benchmarks.txt").read_text()
    assert "mAP" in benchmarks and "CASN/IDE" in benchmarks, "both benchmarks' output"
    with tarfile.open(out / "metrics.tar.gz") as bundle:
        records = {m.name: json.load(bundle.extractfile(m)) for m in bundle.getmembers() if m.name.endswith(".json")}
        notebooks = [m.name for m in tarfile.open(out / "notebooks.tar.gz").getmembers()]
    ran = {name for name in records if name.endswith(".metrics.json")}
    assert ran == {"gpu_run-ci/00_data_and_evaluation.metrics.json", "gpu_run-ci/04_casn_training.metrics.json",
                   "gpu_run-ci-pcb/04_casn_training.metrics.json"}
    assert all(records[name]["status"] == "ok" for name in ran)
    assert len(notebooks) == 3, notebooks
    for half in ("gpu_run-ci", "gpu_run-ci-pcb"):
        assert records[f"{half}/gpu-estimate.json"]["plan_mismatches"] == [], "the budget counts what 04 trained"
