"""PCB (stripes, summed loss, Grad-CAM over the whole map) and model checkpoints for inference."""

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from casn_lite.ablation import variant_loss, variant_names
from casn_lite.attention import grad_cam
from casn_lite.models import build_model, load_checkpoint, save_checkpoint

from .support import run_example


@pytest.fixture
def pcb():
    torch.manual_seed(0)
    return build_model("pcb", "resnet18", num_classes=5, embed_dim=8)


def test_pcb_cuts_the_map_into_six_stripes(pcb):
    out = pcb.eval()(torch.randn(2, 3, 96, 32))
    assert out.feature_map.shape == (2, 512, 6, 2)
    assert out.part_logits.shape == (2, 6, 5)
    assert out.embedding.shape == (2, 6 * 8) and pcb.feature_dim == 48
    torch.testing.assert_close(out.logits, out.part_logits.sum(1))
    with pytest.raises(ValueError, match="taller input"):
        pcb(torch.randn(2, 3, 64, 32))


def test_each_stripe_classifier_looks_only_at_its_rows(pcb):
    A = torch.rand(1, 512, 6, 2, requires_grad=True)
    out = pcb.eval().forward_head(A)
    for j in range(6):
        (g,) = torch.autograd.grad(out.part_logits[0, j, 3], A, retain_graph=True)
        rows = g.abs().sum(dim=(0, 1, 3))
        assert rows[j] > 0 and torch.count_nonzero(rows) == 1
    cam = grad_cam(out.logits[:, 3], A)  # Grad-CAM of the summed true-class score: the whole map
    assert cam.shape == (1, 1, 6, 2)


def test_pcb_variants_train_with_the_same_flags(pcb):
    batch = {"image": torch.randn(4, 3, 96, 32), "pid": torch.tensor([0, 0, 1, 1]),
             "image1": torch.randn(2, 3, 96, 32), "image2": torch.randn(2, 3, 96, 32),
             "same": torch.tensor([1, 0])}
    assert variant_names("pcb") == ["PCB", "PCB+IA", "PCB+SA", "CASN(PCB)"]
    for name in variant_names("pcb"):
        loss_fn = variant_loss(name, feature_dim=pcb.feature_dim, hidden_dim=8)
        assert loss_fn.variant == name
        loss, terms = loss_fn(pcb.train(), batch, torch.device("cpu"))
        assert torch.isfinite(loss)
        loss.backward()
    pcb.eval()
    out = pcb(batch["image"])
    summed = sum(F.cross_entropy(out.part_logits[:, j], batch["pid"]) for j in range(6))
    loss, _ = variant_loss("PCB")(pcb, batch, torch.device("cpu"))
    torch.testing.assert_close(loss, summed)


@pytest.mark.parametrize("arch,size", [("ide", (64, 32)), ("pcb", (96, 32))])
def test_checkpoint_round_trip(tmp_path, arch, size):
    torch.manual_seed(1)
    model = build_model(arch, "resnet18", num_classes=7).eval()
    path = save_checkpoint(model, tmp_path / "model.pt", size, dataset="SynthPeople", rank1=0.5)
    loaded, info = load_checkpoint(path)
    assert info == {"input_size": size, "info": {"dataset": "SynthPeople", "rank1": 0.5}}
    x = torch.randn(2, 3, *size)
    torch.testing.assert_close(loaded(x).embedding, model(x).embedding)
    assert not loaded.training


def test_load_checkpoint_explains_a_wrong_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.pt")
    torch.save({"model": {}, "optimizer": {}}, tmp_path / "last.pt")
    with pytest.raises(ValueError, match="training checkpoint"):
        load_checkpoint(tmp_path / "last.pt")


def test_rank_gallery_example_on_a_generated_folder(tiny_synth, tmp_path, capsys):
    root = tiny_synth[0]
    query = sorted((root / "query").glob("*.jpg"))[0]
    torch.manual_seed(0)
    model = build_model("ide", "resnet18", num_classes=4, embed_dim=16)
    checkpoint = save_checkpoint(model.eval(), tmp_path / "m.pt", (64, 32))
    example = Path(__file__).parents[1] / "examples" / "rank_gallery.py"
    assert run_example(example, checkpoint, query, root / "bounding_box_test", "--topk", "3") == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 4 and lines[1].split()[0] == "1"
    distances = [float(line.split()[1]) for line in lines[1:]]
    assert distances == sorted(distances)
    assert run_example(example, checkpoint, query, tmp_path / "nope") == 2
    assert "does not exist" in capsys.readouterr().err
