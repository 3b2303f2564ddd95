"""The engine under torchrun: two CPU processes on gloo train one model together."""

import json
import subprocess
import sys

import torch

from casn_lite.data import load_dataset, reid_loaders
from casn_lite.engine import evaluate
from casn_lite.models import load_checkpoint

from .support import free_port


def test_torchrun_with_two_gloo_processes(tiny_synth, tmp_path):
    """CASN(IDE), the variant with the most to synchronise: the model's and the Siamese head's
    gradients, identity and pair samplers sharded. (IDE is the same path without the pairs.)"""
    out = tmp_path / "run"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
               "--master_addr", "127.0.0.1", "--master_port", str(free_port()),
               "-m", "casn_lite", "train", "--variant", "CASN(IDE)", "--data-root", str(tiny_synth[0]),
               "--backbone", "resnet18", "--height", "32", "--width", "16", "--epochs", "1",
               "--batch-size", "8", "--num-instances", "2", "--pairs", "4", "--workers", "0",
               "--lr", "1e-3", "--out", str(out), "--quiet"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300,
                          env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["processes"] == 2 and metrics["replicas_agree"] is True
    state = torch.load(out / "checkpoints" / "last.pt", map_location="cpu", weights_only=True)
    assert [h["epoch"] for h in state["history"]] == [1] and any(k.startswith("head.") for k in state["loss"])
    # what rank 0 reports is the retrieval of the model it exported, on the test split
    model, info = load_checkpoint(out / "model.pt")
    assert info["info"]["variant"] == "CASN(IDE)" and info["input_size"] == (32, 16)
    data = load_dataset("auto", tiny_synth[0])
    loaders = reid_loaders(data, 32, 16, 8, 2, in_memory=False, device="cpu")
    again = evaluate(model, loaders.query, loaders.gallery, torch.device("cpu"))
    for key in ("rank1", "rank5", "mAP", "mINP"):
        assert metrics[key] == again[key], key
