"""Where a CASN step spends its time: each part of the step timed on its own.

    python benchmarks/train_throughput.py --breakdown [--height 128 --width 64]
    python benchmarks/step_breakdown.py --height 128 --width 64 [--json out.json]

The step ``CASNLoss`` takes, written out part by part with the library's own functions
(the passes of docs/architecture.md's table), a timer around each:

* data: the next identity batch and pair batch;
* L_ide: the identity batch forward in training mode (pass 1) and its cross-entropy;
* IA: the evaluation-mode pass (2), Grad-CAM of the true class with the soft mask and the
  erasing, the masked pass (3) with L_ia;
* SA: the pairs' training-mode pass (4) with the Siamese head, alpha and L_bce; the
  evaluation-mode pass (5); Grad-CAM of s_i with the profiles and L_sa;
* backward, once per term (L_ide, lambda_1 L_ia, lambda_2 L_sa: their gradients add up to
  the step's), and the optimizer step.

Before timing, the written-out step is checked against ``CASNLoss`` on the same batch:
the same loss and the same gradients, to float tolerance, so what is timed is the step
``fit`` trains with. Printed per variant (IDE, IDE+IA, IDE+SA, CASN(IDE)): milliseconds
per step and each part's share.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import time
from pathlib import Path

import torch

from casn_lite.ablation import variant_loss
from casn_lite.attention import (
    attention_profile,
    empty_maps,
    erase_attended,
    evaluation_mode,
    frozen_batchnorm_stats,
    grad_cam,
    indicator_vector,
    soft_mask,
    upsample,
)
from casn_lite.data import SynthConfig, load_or_generate, pair_loader, reid_loaders
from casn_lite.engine import JointLoader, TrainConfig, make_optimizer, set_epoch
from casn_lite.losses import (
    attention_distance,
    attention_mining_loss,
    identification_loss,
    siamese_attention_loss,
    siamese_bce_loss,
)
from casn_lite.models import build_model

VARIANTS = ("IDE", "IDE+IA", "IDE+SA", "CASN(IDE)")
PARTS = ("data", "L_ide: pass 1", "IA: pass 2 (evaluation)", "IA: Grad-CAM, mask, erase", "IA: pass 3 (masked)",
         "SA: pass 4 (pairs), head, alpha", "SA: pass 5 (evaluation)", "SA: Grad-CAM, profiles", "backward L_ide",
         "backward L_ia", "backward L_sa", "optimizer step")


class Timer:
    """Seconds per named part, summed over steps (a GPU is synchronised at each mark)."""

    def __init__(self, device: torch.device):
        self.device, self.seconds = device, dict.fromkeys(PARTS, 0.0)
        self._last = None

    def start(self) -> None:
        self._sync()
        self._last = time.perf_counter()

    def mark(self, part: str) -> None:
        self._sync()
        now = time.perf_counter()
        self.seconds[part] += now - self._last
        self._last = now

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def step_terms(model, loss_fn, batch: dict, device: torch.device, timer: Timer | None = None) -> dict:
    """The terms of one CASN step, computed as ``CASNLoss.forward`` computes them (after the
    lambdas' ramp), part by part; ``timer`` marks each part."""
    mark = timer.mark if timer is not None else (lambda part: None)
    s = loss_fn.settings
    images, pids = batch["image"].to(device), batch["pid"].to(device)
    out = model(images)  # pass 1
    terms = {"ide": identification_loss(out.identity_logits, pids)}
    mark("L_ide: pass 1")
    if loss_fn.ia:
        with evaluation_mode(model):
            attended = model(images)  # pass 2
        mark("IA: pass 2 (evaluation)")
        class_score = attended.logits.gather(1, pids[:, None]).squeeze(1)
        attention = grad_cam(class_score, attended.feature_map, create_graph=s.second_order)  # M
        masked = erase_attended(images, soft_mask(upsample(attention, images.shape[-2:]), s.sigma, s.omega))  # I*
        mark("IA: Grad-CAM, mask, erase")
        with frozen_batchnorm_stats(model):
            masked_logits = model(masked).logits  # pass 3
        terms["ia"] = s.lambda_ia * attention_mining_loss(masked_logits, pids, s.ia_score, valid=~empty_maps(attention))
        mark("IA: pass 3 (masked)")
    if loss_fn.sa:
        pair = torch.cat([batch["image1"], batch["image2"]]).to(device)
        same = batch["same"].to(device)
        f1, f2 = model(pair).embedding.chunk(2)  # pass 4
        difference = f1 - f2  # f_minus
        pair_logits = loss_fn.head(difference)
        alpha = indicator_vector(pair_logits, difference, s.indicator)
        mark("SA: pass 4 (pairs), head, alpha")
        with evaluation_mode(model):
            seen = model(pair)  # pass 5
        mark("SA: pass 5 (evaluation)")
        g1, g2 = seen.embedding.chunk(2)
        scores = torch.cat([(alpha * g1).sum(1), (alpha * g2).sum(1)])  # s_i = <alpha, f_i>
        maps = grad_cam(scores, seen.feature_map, create_graph=s.second_order)
        _, cropped = attention_profile(maps, batch["image1"].shape[-2:], s.profile_threshold, s.profile_length)
        c1, c2 = cropped.chunk(2)
        m1, m2 = maps.chunk(2)
        l_sa, _ = siamese_attention_loss(siamese_bce_loss(pair_logits, same), attention_distance(c1, c2), same,
                                         s.consistency_weight, s.negative_margin, s.negative_weight,
                                         ~(empty_maps(m1) | empty_maps(m2)))
        terms["sa"] = s.lambda_sa * l_sa
        mark("SA: Grad-CAM, profiles")
    return terms


def backward(terms: dict, timer: Timer | None = None) -> None:
    """Each term back-propagated on its own: their gradients add up to the step's."""
    names = list(terms)
    for i, name in enumerate(names):
        terms[name].backward(retain_graph=i < len(names) - 1)
        if timer is not None:
            timer.mark(f"backward L_{name}")


def check_against_the_loss(model, loss_fn, batch: dict, device: torch.device) -> float:
    """The written-out step's loss and gradients against ``CASNLoss``'s on one batch (the
    same dropout: the generator is reset before each); returns the largest gradient gap."""
    ours, theirs = copy.deepcopy(model).train(), copy.deepcopy(model).train()
    ours_loss, theirs_loss = copy.deepcopy(loss_fn), copy.deepcopy(loss_fn)
    torch.manual_seed(0)
    terms = step_terms(ours, ours_loss, batch, device)
    backward(terms)
    torch.manual_seed(0)
    loss, _ = theirs_loss(theirs, batch, device, progress=1e9)  # after the ramp
    loss.backward()
    total = sum(t.item() for t in terms.values())
    assert abs(total - loss.item()) <= 1e-4 * max(1.0, abs(loss.item())), (total, loss.item())
    gap = 0.0
    for a, b in zip(list(ours.parameters()) + list(ours_loss.parameters()),
                    list(theirs.parameters()) + list(theirs_loss.parameters()), strict=True):
        if a.grad is not None or b.grad is not None:
            gap = max(gap, (a.grad - b.grad).abs().max().item() / max(1e-12, b.grad.abs().max().item()))
    assert gap < 1e-3, f"gradients differ from CASNLoss's by {gap:.2e} (relative)"
    return gap


def breakdown(model_fn, loader, device: torch.device, steps: int, warmup: int = 2) -> dict[str, dict]:
    """Seconds per step of each part, per variant, over ``steps`` timed steps after ``warmup``."""
    results = {}
    for name in VARIANTS:
        model = model_fn().to(device).train()
        loss_fn = variant_loss(name, feature_dim=model.feature_dim).to(device)
        first = next(iter(loader))
        gap = check_against_the_loss(model, loss_fn, first, device)
        params = torch.nn.ModuleList([model, loss_fn])
        optimizer = make_optimizer(params, TrainConfig(optimizer="adam", lr=1e-4))
        timer = Timer(device)
        set_epoch(loader, 0)
        batches = iter(loader)
        for step in range(warmup + steps):
            if step == warmup:
                timer.seconds = dict.fromkeys(PARTS, 0.0)
            timer.start()
            batch = next(batches)
            timer.mark("data")
            terms = step_terms(model, loss_fn, batch, device, timer)
            optimizer.zero_grad(set_to_none=True)
            backward(terms, timer)
            optimizer.step()
            timer.mark("optimizer step")
        results[name] = {"seconds_per_step": {p: s / steps for p, s in timer.seconds.items()}, "gradient_gap": gap}
    return results


def table(results: dict[str, dict], batch_size: int) -> str:
    """Milliseconds per step and share of each part; images per second of identity images."""
    head = "| part | " + " | ".join(results) + " |"
    lines = [head, "|---|" + "---|" * len(results)]
    totals = {v: sum(r["seconds_per_step"].values()) for v, r in results.items()}
    for part in PARTS:
        cells = []
        for variant, r in results.items():
            seconds = r["seconds_per_step"][part]
            cells.append("" if seconds == 0 else f"{1000 * seconds:.0f} ms ({100 * seconds / totals[variant]:.0f} %)")
        if any(cells):
            lines.append(f"| {part} | " + " | ".join(cells) + " |")
    lines.append("| **step** | " + " | ".join(f"**{1000 * t:.0f} ms**" for t in totals.values()) + " |")
    lines.append("| images/s (identity batch) | " + " | ".join(f"{batch_size / t:.1f}" for t in totals.values()) + " |")
    ide = totals[VARIANTS[0]]
    lines.append("| of IDE's speed | " + " | ".join(f"{ide / t:.2f}" for t in totals.values()) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--height", type=int, default=128)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--pairs", type=int, default=8, help="pairs per batch (default 8)")
    parser.add_argument("--steps", type=int, default=6, help="timed steps per variant (default 6)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--json", type=Path, help="also write the seconds per part here")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    ids = max(64, (args.steps + 3) * args.batch_size // 16 + 1)
    data = load_or_generate(None, SynthConfig(train_ids=ids, test_ids=16, cameras=4, images_per_camera=4,
                                              height=max(128, args.height), width=max(64, args.width), seed=0))
    loaders = reid_loaders(data, args.height, args.width, args.batch_size, 4, seed=0, in_memory=False)
    joint = JointLoader(loaders.train, pair_loader(data, args.height, args.width, args.pairs, len(loaders.train),
                                                   seed=0))

    def model_fn():
        torch.manual_seed(0)
        return build_model("ide", "resnet18", num_classes=data.num_train_pids)

    where = torch.cuda.get_device_name(device) if device.type == "cuda" else \
        f"{platform.processor() or 'cpu'}, {torch.get_num_threads()} threads"
    print(f"{where}; torch {torch.__version__}; ResNet-18 {args.height}x{args.width}, batch {args.batch_size} "
          f"+ {args.pairs} pairs, fp32, {args.steps} timed steps per variant")
    results = breakdown(model_fn, joint, device, args.steps)
    print(table(results, args.batch_size))
    print("gradients of the written-out step against CASNLoss's (largest relative gap): "
          + ", ".join(f"{v} {r['gradient_gap']:.1e}" for v, r in results.items()))
    if args.json:
        args.json.write_text(json.dumps({"settings": vars(args) | {"json": None, "torch": torch.__version__},
                                         "results": results}, indent=1))


if __name__ == "__main__":
    main()
