"""The engine under torchrun: two CPU processes on gloo train one model together."""

import json
import socket
import subprocess
import sys

import pytest

from casn_lite.models import load_checkpoint


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("variant", ["IDE", "CASN(IDE)"])
def test_torchrun_with_two_gloo_processes(tiny_synth, tmp_path, variant):
    out = tmp_path / "run"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
               "--master_addr", "127.0.0.1", "--master_port", str(free_port()),
               "-m", "casn_lite", "train", "--variant", variant, "--data-root", str(tiny_synth[0]),
               "--backbone", "resnet18", "--height", "64", "--width", "32", "--epochs", "1",
               "--batch-size", "8", "--num-instances", "2", "--pairs", "4", "--workers", "0",
               "--lr", "1e-3", "--out", str(out), "--quiet"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300,
                          env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["processes"] == 2 and metrics["replicas_agree"] is True
    assert 0 <= metrics["rank1"] <= 1
    model, info = load_checkpoint(out / "model.pt")
    assert info["info"]["variant"] == variant
    assert (out / "checkpoints" / "last.pt").is_file()
