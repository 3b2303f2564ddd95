"""Why CASN's Siamese head is near chance (L_bce about ln 2) on test pairs, and what fixes it.

    .venv/bin/python benchmarks/siamese_head.py [--settings base large nb03] [--seeds 0 1 2]
        [--steps 100] [--lrs 1e-3 1e-4] [--long-steps 100 500 2000] [--json out.json]
        [--joint nb03 short] [--joint-runs "f1-f2@100" "f1-f2@1000"] [--joint-pairs 16]

From cached IDE starts on the attention study's data (``benchmarks/attention_study.py``:
``base`` 64 x 32 and ``large`` 128 x 64, 30 epochs, erase_p 0.5, 16 pairs per step;
``nb03``, notebook 03's own start, 64 x 32, 8 epochs, 8 pairs per step; ``short``, the
study's 10-epoch starts with notebook 03's 8 pairs), a start that is not in the cache
skipped, never trained, the network is frozen (evaluation mode, features under
``no_grad``) and fresh Siamese heads (``SiameseHead``: FC-ReLU-FC, two logits) learn from
training pairs with Adam, as ``warm_up_siamese_head`` does, on different inputs (``HEADS``):

* ``f1-f2``: today's head on f_minus = f1 - f2, antisymmetric in the pair's order;
* ``(f1-f2)^2``, ``|f1-f2|``: the elementwise square and absolute value (symmetric);
* ``f1-f2, both orders``: today's head, each training pair also fed as f2 - f1 (same label);
* ``f1-f2, order-averaged``: today's head applied to f1 - f2 and to f2 - f1, its logits
  averaged, in training and measurement: the paper's head and f_minus, and symmetric.

Every head starts from the same weights (seeded) and sees the same pairs. Regimes:

* ``warm-up``: exactly ``warm_up_siamese_head`` (``--steps``, 100 as the study's
  ``head_warmup``; pairs from ``pair_loader``, augmented, cross-camera positives, half
  positives, the setting's pairs per batch), at each of ``--lrs`` (1e-3 is the warm-up's);
  the features computed per step. ``tests/test_siamese_head_benchmark.py`` checks the
  f1-f2 head's losses against the library's function, step by step.
* ``long``: the same sampler's pairs over the training images' features computed once
  (unaugmented), measured after each of ``--long-steps``: is the warm-up too short?
* ``joint`` (``--joint SETTING ...``: about a minute per run at 64 x 32): notebook 03's
  IDE+SA (``train_from`` with ``head_warmup``, 3 epochs, lambda_sa ramped over half an
  epoch), each head of ``--joint-runs`` (input @ warm-up steps) trained with the network,
  ``--joint-pairs`` pairs per step (default: the setting's), then measured on the network
  it trained with (not frozen: the model check does not apply).

Each head is measured on held-out test pairs (``test_pair_loader``, 512 fixed pairs of test
identities, two cameras, half positives) and on 512 fixed pairs of training images
(unaugmented): L_bce, accuracy (argmax), ROC AUC of the margin z_same - z_diff, and the
share of test pairs whose answer changes when the pair is given in the other order.
``cosine`` needs no head: the AUC of cos(f1, f2), how separable the features are at all.
The model's weights and batch-norm statistics are compared before and after the frozen
regimes: the run fails if they moved.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from casn_lite.ablation import (  # the private two: the cache key, to skip what is not cached
    START_CACHE,
    StartConfig,
    _runtime_changes,
    _start_key,
    data_fingerprint,
    ide_start,
    start_loaders,
    train_from,
)
from casn_lite.attention import evaluation_mode
from casn_lite.data import (
    ImageDataset,
    PairSampler,
    SynthConfig,
    build_transforms,
    load_or_generate,
    pair_loader,
    test_pair_loader,
)
from casn_lite.engine import JointLoader, Runtime, TrainConfig, set_epoch
from casn_lite.evaluation import roc_auc
from casn_lite.losses import CASNLoss, CASNSettings, SiameseHead, siamese_bce_loss
from casn_lite.models import default_embed_dim

# the attention study's data (benchmarks/attention_study.py: DATA), also notebook 03's
DATA = SynthConfig(train_ids=48, test_ids=48, cameras=4, images_per_camera=4, seed=0)


class Setting(NamedTuple):
    height: int
    width: int
    start_epochs: int
    pairs_per_batch: int  # the warm-up's pairs per step
    erase_p: float = 0.5


SETTINGS = {  # the study's SETTINGS "base" and "large"; notebook 03's parameters
    "base": Setting(64, 32, 30, 16),
    "large": Setting(128, 64, 30, 16),
    "nb03": Setting(64, 32, 8, 8),
    "short": Setting(64, 32, 10, 8),  # the study's "short-start" starts (seeds 0-2), notebook 03's pairs
}
DEFAULT_SETTINGS = ("base", "large", "nb03")


# --------------------------------------------------------------------------- the heads
class PairHead(nn.Module):
    """``SiameseHead`` on a function of f_minus: ``kind`` is "difference" (today's),
    "square", "abs" or "average" (today's head on f_minus and on -f_minus, logits averaged).
    Its forward takes f_minus, as ``SiameseHead`` does, so ``CASNLoss`` can own it."""

    KINDS = ("difference", "square", "abs", "average")

    def __init__(self, kind: str, feature_dim: int = 512, hidden_dim: int = 512):
        super().__init__()
        if kind not in self.KINDS:
            raise ValueError(f"unknown kind {kind!r}")
        self.kind = kind
        self.head = SiameseHead(feature_dim, hidden_dim)

    def forward(self, difference: torch.Tensor) -> torch.Tensor:
        if self.kind == "square":
            return self.head(difference ** 2)
        if self.kind == "abs":
            return self.head(difference.abs())
        if self.kind == "average":
            return (self.head(difference) + self.head(-difference)) / 2
        return self.head(difference)


HEADS = {  # name: (PairHead kind, also train on the swapped pair)
    "f1-f2": ("difference", False),
    "(f1-f2)^2": ("square", False),
    "|f1-f2|": ("abs", False),
    "f1-f2, both orders": ("difference", True),
    "f1-f2, order-averaged": ("average", False),
}


def fresh_heads(names, feature_dim: int, seed: int, device) -> dict[str, PairHead]:
    """One head per name, each drawn from ``seed``: the same initial weights for all."""
    heads = {}
    for name in names:
        torch.manual_seed(seed)
        heads[name] = PairHead(HEADS[name][0], feature_dim).to(device)
    return heads


# --------------------------------------------------------------------------- frozen features
@torch.no_grad()
def features(model: nn.Module, images: torch.Tensor, device) -> torch.Tensor:
    """The model's embeddings f in evaluation mode without gradient, as the warm-up takes them."""
    with evaluation_mode(model):
        return model(images.to(device)).embedding


def pair_features(model: nn.Module, loader, device) -> dict[str, torch.Tensor]:
    """f1, f2 and same of every pair a (fixed) pair loader yields."""
    f1, f2, same = [], [], []
    for batch in loader:
        a, b = features(model, torch.cat([batch["image1"], batch["image2"]]), device).chunk(2)
        f1.append(a)
        f2.append(b)
        same.append(batch["same"].to(device))
    return {"f1": torch.cat(f1), "f2": torch.cat(f2), "same": torch.cat(same)}


def bank_pairs(bank: torch.Tensor, pids, pairs) -> dict[str, torch.Tensor]:
    """f1, f2 and same of index pairs into ``bank`` (the features of ``pids``' images)."""
    i, j = torch.tensor(list(pairs)).T
    same = torch.as_tensor(np.asarray(pids)[i.numpy()] == np.asarray(pids)[j.numpy()]).long()
    return {"f1": bank[i], "f2": bank[j], "same": same.to(bank.device)}


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def unchanged(model: nn.Module, before: dict[str, torch.Tensor]) -> bool:
    """Every weight and buffer (batch norm's running statistics too) as it was."""
    after = model.state_dict()
    return after.keys() == before.keys() and all(torch.equal(after[k], before[k]) for k in before)


# --------------------------------------------------------------------------- training
def head_step(name: str, head: PairHead, optimizer, f1, f2, same) -> float:
    """One Adam step of ``head`` on a batch of frozen pair features; returns its L_bce."""
    x, y = f1 - f2, same
    if HEADS[name][1]:  # both orders
        x, y = torch.cat([x, f2 - f1]), torch.cat([same, same])
    loss = siamese_bce_loss(head(x), y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.item()


def train_warmup(heads: dict, lrs: dict, model: nn.Module, pair_batches, device, steps: int) -> dict[str, list[float]]:
    """``warm_up_siamese_head`` for every head at once (``lrs``: each head's): the same
    batches, the model's features computed once per step."""
    optimizers = {key: torch.optim.Adam(head.parameters(), lr=lrs[key]) for key, head in heads.items()}
    for head in heads.values():
        head.train()
    losses: dict = {key: [] for key in heads}
    batches = iter(pair_batches)
    for _ in range(steps):
        try:
            batch = next(batches)
        except StopIteration:  # the pair loader ran out: start it again
            batches = iter(pair_batches)
            batch = next(batches)
        f1, f2 = features(model, torch.cat([batch["image1"], batch["image2"]]), device).chunk(2)
        same = batch["same"].to(device)
        for key, head in heads.items():
            losses[key].append(head_step(key[0], head, optimizers[key], f1, f2, same))
    return losses


def train_long(heads: dict, lrs: dict, bank: torch.Tensor, pids, camids, checkpoints, seed: int,
               pairs_per_batch: int, on_checkpoint) -> None:
    """Steps on pairs of the training images' features ``bank`` (computed once), drawn by
    the training pairs' sampler; ``on_checkpoint(step, losses)`` after each of ``checkpoints``."""
    sampler = PairSampler(pids, camids, pairs_per_batch * 100, 0.5, seed=seed)
    optimizers = {key: torch.optim.Adam(head.parameters(), lr=lrs[key]) for key, head in heads.items()}
    losses: dict = {key: [] for key in heads}
    pending: list = []
    for step in range(1, max(checkpoints) + 1):
        for head in heads.values():
            head.train()
        if len(pending) < pairs_per_batch:
            pending += list(sampler)
        batch = bank_pairs(bank, pids, pending[:pairs_per_batch])
        pending = pending[pairs_per_batch:]
        for key, head in heads.items():
            losses[key].append(head_step(key[0], head, optimizers[key], batch["f1"], batch["f2"], batch["same"]))
        if step in checkpoints:
            on_checkpoint(step, losses)


# --------------------------------------------------------------------------- measuring
@torch.no_grad()
def measure(head: nn.Module, pairs: dict[str, torch.Tensor]) -> dict[str, float]:
    """L_bce, accuracy and ROC AUC of ``head`` on fixed pairs, and the share of pairs whose
    answer changes when the pair is given in the other order."""
    head.eval()
    z, swapped = head(pairs["f1"] - pairs["f2"]), head(pairs["f2"] - pairs["f1"])
    same = pairs["same"]
    return {"bce": siamese_bce_loss(z, same).item(),
            "accuracy": (z.argmax(1) == same).float().mean().item(),
            "auc": roc_auc((z[:, 1] - z[:, 0]).cpu().numpy(), same.cpu().numpy()),
            "order_flips": (z.argmax(1) != swapped.argmax(1)).float().mean().item()}


def cosine_auc(pairs: dict[str, torch.Tensor]) -> float:
    """ROC AUC of cos(f1, f2) as the score of "same": no head at all."""
    return roc_auc(F.cosine_similarity(pairs["f1"], pairs["f2"]).cpu().numpy(), pairs["same"].cpu().numpy())


# --------------------------------------------------------------------------- one start
def cached_start(data, cfg: StartConfig, device, cache_dir: Path):
    """The cached IDE start of ``cfg``, or None when ``cache_dir`` does not hold it (never trained here)."""
    full = replace(cfg, embed_dim=default_embed_dim(cfg.arch, cfg.embed_dim))  # as ide_start keys it
    key = _start_key(data_fingerprint(data), full, _runtime_changes(Runtime(), full, device))
    if not (Path(cache_dir) / f"ide-start-{key}.pt").is_file():
        return None
    model, info = ide_start(data, cfg, device, cache_dir=cache_dir, progress=False)
    if not info["cached"]:
        raise AssertionError(f"start {key} was trained, not loaded")
    return model.eval()


def start_config(s: Setting, seed: int) -> StartConfig:
    return StartConfig(height=s.height, width=s.width, epochs=s.start_epochs, seed=seed, erase_p=s.erase_p)


def row(common: dict, regime: str, name: str, steps: int, lr: float, train: dict, test: dict, last_losses=()) -> dict:
    return {**common, "regime": regime, "input": name, "steps": steps, "lr": lr,
            "train_bce_last10": float(np.mean(last_losses[-10:])) if len(last_losses) else math.nan,
            **{f"train_{k}": train.get(k, math.nan) for k in ("bce", "accuracy", "auc")},
            **{f"test_{k}": test.get(k, math.nan) for k in ("bce", "accuracy", "auc", "order_flips")}}


def run_start(name: str, seed: int, data, device, args) -> list[dict]:
    s = SETTINGS[name]
    cfg = start_config(s, seed)
    model = cached_start(data, cfg, device, args.cache_dir)
    if model is None:
        print(f"{name} seed {seed}: no cached start in {args.cache_dir}, skipped", flush=True)
        return []
    tic = time.perf_counter()
    before = snapshot(model)
    pids, camids = [x.pid for x in data.train], [x.camid for x in data.train]
    bank = torch.cat([features(model, batch["image"], device)  # every training image, unaugmented
                      for batch in DataLoader(ImageDataset(data.train, build_transforms(s.height, s.width)),
                                              batch_size=64)])
    train = bank_pairs(bank, pids, PairSampler(pids, camids, args.pairs, 0.5, seed=seed + 1000, reshuffle=False))
    test = pair_features(model, test_pair_loader(data, s.height, s.width, num_pairs=args.pairs, seed=seed), device)
    common = {"setting": name, "seed": seed, "height": s.height, "width": s.width, "start_epochs": s.start_epochs,
              "pairs_per_batch": s.pairs_per_batch}
    rows = [row(common, "none", "cosine", 0, math.nan, {"auc": cosine_auc(train)}, {"auc": cosine_auc(test)})]
    keys = [(h, lr) for lr in args.lrs for h in args.heads]
    lrs = {key: key[1] for key in keys}

    def fresh():  # one head per (input, lr), all from the same initial weights
        return {key: fresh_heads([key[0]], model.feature_dim, seed, device)[key[0]] for key in keys}

    if args.steps:
        loaders = start_loaders(data, cfg, device)  # the pair loader as the study builds it
        pairs = pair_loader(data, s.height, s.width, s.pairs_per_batch, len(loaders.train), seed=seed,
                            erase_p=s.erase_p)
        set_epoch(pairs, 0)  # as train_from does before the warm-up
        heads = fresh()
        losses = train_warmup(heads, lrs, model, pairs, device, args.steps)
        rows += [row(common, "warm-up", h, args.steps, lr, measure(heads[(h, lr)], train),
                     measure(heads[(h, lr)], test), losses[(h, lr)]) for h, lr in keys]
    if args.long_steps:
        heads = fresh()

        def checkpoint(step, losses):
            rows.extend(row(common, "long", h, step, lr, measure(heads[(h, lr)], train),
                            measure(heads[(h, lr)], test), losses[(h, lr)]) for h, lr in keys)

        train_long(heads, lrs, bank, pids, camids, sorted(args.long_steps), seed, s.pairs_per_batch, checkpoint)
    if not unchanged(model, before):
        raise AssertionError(f"{name} seed {seed}: the model's weights or statistics moved while heads trained")
    print(f"{name} seed {seed}: frozen regimes {time.perf_counter() - tic:.0f} s, the model unchanged", flush=True)
    if name in args.joint:
        rows += joint_runs(name, s, cfg, model, seed, data, device, args, common)
    return rows


JOINT = ("f1-f2@100", "f1-f2@1000", "f1-f2, order-averaged@100", "(f1-f2)^2@100")  # head input @ warm-up steps


def joint_runs(name: str, s: Setting, cfg: StartConfig, start: nn.Module, seed: int, data, device, args,
               common: dict) -> list[dict]:
    """Notebook 03's IDE+SA from ``start`` with each of ``args.joint_runs`` ("head input@warm-up
    steps"), ``args.joint_pairs`` pairs per step (None: the setting's); the head measured on
    the network trained with it."""
    loaders = start_loaders(data, cfg, device)
    pairs_per_batch = args.joint_pairs or s.pairs_per_batch
    joint = JointLoader(loaders.train, pair_loader(data, s.height, s.width, pairs_per_batch, len(loaders.train),
                                                   seed=seed, erase_p=s.erase_p))
    more = TrainConfig(epochs=3, optimizer="adam", lr=1e-3, schedule="cosine", warmup_epochs=0.5, progress=False)
    tpl = test_pair_loader(data, s.height, s.width, num_pairs=args.pairs, seed=seed)
    pids, camids = [x.pid for x in data.train], [x.camid for x in data.train]
    rows = []
    for spec in args.joint_runs:
        head_name, warmup = spec.rsplit("@", 1)
        warmup = int(warmup)
        tic = time.perf_counter()
        loss = CASNLoss(ia=False, sa=True, feature_dim=start.feature_dim, settings=CASNSettings(ramp_epochs=0.5))
        loss.head = PairHead(HEADS[head_name][0], start.feature_dim)  # drawn afresh by train_from
        run = train_from(start, joint, more, loss, device, seed, head_warmup=warmup)
        model = run["model"].eval()
        bank = torch.cat([features(model, batch["image"], device)
                          for batch in DataLoader(ImageDataset(data.train, build_transforms(s.height, s.width)),
                                                  batch_size=64)])
        train = bank_pairs(bank, pids, PairSampler(pids, camids, args.pairs, 0.5, seed=seed + 1000, reshuffle=False))
        test = pair_features(model, tpl, device)
        on_test = measure(loss.head, test)
        rows.append(row({**common, "pairs_per_batch": pairs_per_batch, "joint_bce_epochs": [h["bce"] for h in run["history"]],
                         "joint_cosine_test_auc": cosine_auc(test)}, f"joint {pairs_per_batch} pairs, warm-up {warmup}",
                        head_name, warmup,
                        1e-3, measure(loss.head, train), on_test, run["warmup"]))
        print(f"{name} seed {seed} joint {head_name} (warm-up {warmup}, {pairs_per_batch} pairs): test AUC {on_test['auc']:.3f}, "
              f"L_bce {on_test['bce']:.3f}; cosine {cosine_auc(test):.3f} ({time.perf_counter() - tic:.0f} s)",
              flush=True)
    return rows


# --------------------------------------------------------------------------- the tables
COLUMNS = ("setting", "seed", "regime", "steps", "lr", "head input", "train L_bce", "train AUC",
           "test L_bce", "test acc", "test AUC", "order flips")


def _f(value: float, digits: int = 3) -> str:
    return "-" if value != value else f"{value:.{digits}f}"


def _lr(value: float) -> str:
    return "-" if value != value else f"{value:g}"


def table(rows: list[dict]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in rows:
        cells = [r["setting"], str(r["seed"]), r["regime"], str(r["steps"]), _lr(r["lr"]), r["input"],
                 _f(r["train_bce"]), _f(r["train_auc"]), _f(r["test_bce"]), _f(r["test_accuracy"]),
                 _f(r["test_auc"]), _f(r["test_order_flips"], 2)]
        lines.append("| " + " | ".join(cells).replace("|f1-f2|", "\\|f1-f2\\|") + " |")
    return "\n".join(lines)


def summary(rows: list[dict]) -> str:
    """Mean over seeds (and min-max of test AUC) per setting, regime, steps, lr and input."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["setting"], r["regime"], r["steps"], _lr(r["lr"]), r["input"]), []).append(r)
    lines = ["| setting | regime | steps | lr | head input | seeds | train L_bce | test L_bce | test acc "
             "| test AUC (min-max) | order flips |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for (setting, regime, steps, lr, name), group in groups.items():
        def mean(key, group=group):
            values = [g[key] for g in group if g[key] == g[key]]
            return float(np.mean(values)) if values else math.nan
        auc = [g["test_auc"] for g in group]
        cells = [setting, regime, str(steps), lr, name, str(len(group)), _f(mean("train_bce")), _f(mean("test_bce")),
                 _f(mean("test_accuracy")), f"{_f(mean('test_auc'))} ({_f(min(auc))}-{_f(max(auc))})",
                 _f(mean("test_order_flips"), 2)]
        lines.append("| " + " | ".join(cells).replace("|f1-f2|", "\\|f1-f2\\|") + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--settings", nargs="+", default=list(DEFAULT_SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--heads", nargs="+", default=list(HEADS), choices=list(HEADS))
    parser.add_argument("--steps", type=int, default=100, help="warm-up steps (the study's head_warmup; 0: none)")
    parser.add_argument("--lrs", nargs="+", type=float, default=[1e-3], help="Adam's (1e-3: the warm-up's)")
    parser.add_argument("--long-steps", nargs="*", type=int, default=[2000],
                        help="measure the long regime after these steps (none: no long regime)")
    parser.add_argument("--joint", nargs="*", default=[], choices=list(SETTINGS), metavar="SETTING",
                        help="also notebook 03's IDE+SA with the heads of --joint-runs, for these settings (a minute a run)")
    parser.add_argument("--joint-runs", nargs="+", default=list(JOINT), metavar="INPUT@WARMUP",
                        help="the joint runs: head input @ warm-up steps")
    parser.add_argument("--joint-pairs", type=int, help="pairs per step in the joint runs (default: the setting's)")
    parser.add_argument("--pairs", type=int, default=512, help="fixed test pairs (and training pairs) measured")
    parser.add_argument("--cache-dir", type=Path, default=START_CACHE)
    parser.add_argument("--json", type=Path, help="write the rows here")
    args = parser.parse_args(argv)
    for spec in args.joint_runs:
        if spec.rsplit("@", 1)[0] not in HEADS or not spec.rsplit("@", 1)[-1].isdigit():
            parser.error(f"--joint-runs: {spec!r} is not INPUT@STEPS with INPUT one of {', '.join(HEADS)}")

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    device = torch.device("cpu")
    data = load_or_generate(None, DATA)
    tic = time.perf_counter()
    rows = [r for name in args.settings for seed in args.seeds for r in run_start(name, seed, data, device, args)]
    print()
    print(table(rows))
    print()
    print(summary(rows))
    print(f"\n{time.perf_counter() - tic:.0f} s, torch {torch.__version__}, {platform.machine()}, "
          f"{torch.get_num_threads()} thread(s)")
    if args.json:
        args.json.write_text(json.dumps({"command": " ".join(sys.argv), "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
