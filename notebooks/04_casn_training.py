# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python (casn-lite)
#     language: python
#     name: casn-lite
# ---

# %% [markdown]
# # 04 · Training all of CASN
#
# Notebooks 02 and 03 built the two halves of CASN one at a time. Here they train
# together, as in the paper:
#
# $$L = L_{ide} + \lambda_1 L_{ia} + \lambda_2 L_{sa}$$
#
# You will learn:
# 1. how a CASN training step is composed (identity batch + pair batch);
# 2. how to read the three loss terms over training;
# 3. how CASN(IDE) compares with IDE trained exactly as long, in retrieval and in measured
#    attention;
# 4. how the two models attend to the same person seen by two cameras.
#
# **Time:** about 95 s on a 2-core laptop at these defaults, with the
# three IDE starts and notebook 02's IDE runs loaded from `runs/cache/` (about 80 s more
# when the starts must be trained); about 4 min at the `cpu` profile on a 2-core Xeon with
# AVX-512 (three CASN fine-tunings, the rest loaded; 13 min in the committed run, on
# a 2-core AMD EPYC with AVX2 only, about 3 times slower than the Xeon); on one GPU at the `gpu`
# profile: not measured yet (no GPU has run it).

# %% tags=["parameters"]
seed = 0  # the data, the start the figures show and the first of the seeds compared
more_seeds = [1, 2]  # section 2 also trains both arms from these seeds' starts: a spread, and a paired test
data_root = None  # a Market-1501 / DukeMTMC-reID / CUHK03-NP folder; None: generate SynthPeople
train_ids = 48
test_ids = 48
cameras = 4
images_per_camera = 4
height = 64
width = 32
arch = "ide"  # ide or pcb; PCB cuts conv5 into 6 stripes, so it needs an input at least 96 pixels tall
backbone = "resnet18"
pretrained = False  # True: ImageNet weights, which must be downloaded; auto: them when available
last_stride = 1
embed_dim = None  # None: 512 for IDE, 256 per stripe for PCB
ide_epochs = 8  # the shared IDE start (cached: notebooks 02-05 train it once)
casn_epochs = 2  # then CASN(IDE), and IDE for as long (the control); as long as 02, 03 and 05
batch_size = 32
num_instances = 4
erase_p = 0.5  # random erasing: the share of training images with a rectangle blanked out
pairs_per_batch = 8
optimizer = "adam"
lr = 1e-3
finetune_lr = None  # learning rate after the IDE start (None: lr); lower keeps a converged start's focus
lambda_ia = 1.0
lambda_sa = 1.0
ramp_epochs = 0.5  # lambdas grow from 0 over this many epochs (0: the paper's, no ramp)
head_warmup = 100  # steps of the Siamese head alone before SA starts (0: the paper's, none)
ia_gradient = "all"  # the paper's form; "attention": L_ia can move only the attention (see docs)
sigma = 0.5
omega = 10.0
second_order = False
indicator = "margin"
profile_threshold = 0.2
profile_length = 32
consistency_weight = 0.2
num_workers = 0
runtime = {}  # how this machine runs it (casn_lite.engine.Runtime); {}: bf16, channels_last, in-memory images on a GPU only
checkpoint_dir = None  # a folder: every run saves each epoch there and resumes when restarted

# %%
import copy
import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from IPython.display import display

import casn_lite
from casn_lite import viz
from casn_lite.ablation import (
    StartConfig,
    arms_over_seeds,
    ide_start,
    start_loaders,
    variant_loss,
    variant_names,
)
from casn_lite.attention import similarity_attention
from casn_lite.attention_metrics import person_lift
from casn_lite.data import (
    SynthConfig,
    cross_camera_matches,
    load_or_generate,
    pair_loader,
    test_pair_loader,
)
from casn_lite.engine import (
    JointLoader,
    Runtime,
    TrainConfig,
    default_device,
    extract_features,
    seed_everything,
)
from casn_lite.evaluation import pairwise_distance
from casn_lite.losses import CASNSettings
from casn_lite.verdict import verdict_lines

baseline, casn = variant_names(arch)[0], variant_names(arch)[-1]  # e.g. IDE and CASN(IDE)
seed_everything(seed)
device = default_device()
machine = Runtime.from_parameters(runtime)  # the profile's machine settings (GPU branches; an epoch cap in smoke runs)
print("device:", device)


# %% [markdown]
# ## 1 · A CASN training step
#
# Every step takes **one identity batch** of $P \times K$ images
# (`batch_size / num_instances` people, `num_instances` images each), used by $L_{ide}$
# and $L_{ia}$, and **one pair batch** of `pairs_per_batch` pairs (half the same person
# from two cameras, half two different people), used by $L_{sa}$. With the defaults a step
# sees 32 + 2 x 8 = 48 images. An epoch is one pass over the identity batches.
#
# The network runs five times in a CASN step:
#
# | pass | images | mode | for |
# |---|---|---|---|
# | 1 | the identity batch | training | $L_{ide}$ |
# | 2 | the identity batch | evaluation | Grad-CAM of the true class: the map $M$ |
# | 3 | the identity batch, masked by $T(M)$ | training, batch-norm statistics frozen | $L_{ia}$ |
# | 4 | both images of every pair | training | $f_1 - f_2$, the Siamese head, $L_{bce}$ |
# | 5 | both images of every pair | evaluation | Grad-CAM of $s_i = \langle \alpha, f_i \rangle$: the profiles of $L_{sa}$ |
#
# so the identity images pass three times and the pairs twice; IDE makes pass 1 only.

# %%
config = SynthConfig(train_ids=train_ids, test_ids=test_ids, cameras=cameras,
                     images_per_camera=images_per_camera, seed=seed)
data = load_or_generate(data_root, config)
start_config = StartConfig(arch=arch, backbone=backbone, height=height, width=width, epochs=ide_epochs,
                           seed=seed, batch_size=batch_size, num_instances=num_instances, optimizer=optimizer,
                           lr=lr, pretrained=pretrained, last_stride=last_stride, embed_dim=embed_dim,
                           erase_p=erase_p)
loaders = start_loaders(data, start_config, device, machine, num_workers)  # the start's batches, every variant's too
joint = JointLoader(loaders.train, pair_loader(data, height, width, pairs_per_batch, len(loaders.train),
                                               seed=seed, num_workers=num_workers, images=loaders.train_images,
                                               erase_p=erase_p))
step = next(iter(joint))
print({k: tuple(v.shape) for k, v in step.items() if torch.is_tensor(v) and v.ndim == 4})
assert step["image"].shape == (batch_size, 3, height, width), "the identity batch"
assert step["image1"].shape == step["image2"].shape == (pairs_per_batch, 3, height, width), "the pairs"

# %% [markdown]
# What those passes cost, measured once on this project's 2-core machine at 128 x 64 with
# a ResNet-18 (`benchmarks/step_breakdown.py`, which writes the step out part by part and
# first checks it gives `CASNLoss`'s loss and gradients; `benchmarks/README.md` has the
# table). Read back here, not timed: a timing depends on the machine and its load.

# %%
measured = json.loads((Path(casn_lite.__file__).parents[1] / "benchmarks" / "step_breakdown.json").read_text())
seconds = {name: r["seconds_per_step"] for name, r in measured["results"].items()}
fig = viz.plot_step_breakdown(seconds)
ide_step = sum(seconds["IDE"].values())
for name, parts in seconds.items():
    backward = sum(v for k, v in parts.items() if k.startswith("backward"))
    print(f"{name:<10} {1000 * sum(parts.values()):5.0f} ms a step, {ide_step / sum(parts.values()):.2f} of IDE's "
          f"speed; backward {100 * backward / sum(parts.values()):.0f} %")

# %% [markdown]
# Back-propagating L_ia costs about twice L_ide's backward: its gradient reaches the
# network through the masked pass *and*, through the mask, through the evaluation pass
# that made the attention (the paper trains the attention itself). None of the five
# passes recomputes what another holds: 1 and 2 differ in batch norm and dropout, 4 and 5
# likewise, and 3 sees other images.

# %% [markdown]
# ## 2 · The shared start, then CASN(IDE) and its control
#
# Attention losses need a network that already finds *some* identity evidence, so IDE
# trains alone first (the paper starts from ImageNet weights instead); `ide_start` keeps it
# in `runs/cache/` for notebooks 02-05. From those weights, CASN(IDE) and IDE each train
# `casn_epochs` more, on the same batches, and the same again from the starts of
# `more_seeds`. A run another notebook has trained with the same settings (02's IDE, for
# one) is loaded from `runs/cache/` instead of trained again; the lines under the cell say
# which. Before SA starts, the Siamese head learns alone
# for `head_warmup` steps on the start's features (a fresh head cannot tell same from
# different, its $L_{bce}$ near or above chance, and its indicator $\alpha$ would pick an arbitrary half of the dimensions), and the lambdas
# grow from 0 over `ramp_epochs`.

# %%
start, info = ide_start(data, start_config, device, machine)
print(f"{baseline} start", "loaded from the cache" if info["cached"] else f"trained in {info['seconds']:.0f} s")

# %% [markdown]
# The loss `fit` back-propagates, on the first step, term by term (from a copy of the start,
# with a fresh Siamese head, after the lambdas' ramp):
#
# $$L = L_{ide} + \lambda_1 L_{ia} + \lambda_2 L_{sa}, \qquad
#   L_{sa} = L_{bce} + 0.2\,\lVert M^*_{m1} - M^*_{m2} \rVert_2 .$$

# %%
settings = CASNSettings.from_parameters(globals())  # every CASN knob of the parameters cell
one_step = variant_loss(casn, feature_dim=start.feature_dim, settings=settings)
loss, terms = one_step(copy.deepcopy(start).train(), step, device, progress=ramp_epochs)
combined = terms["ide"] + lambda_ia * terms["ia"] + lambda_sa * terms["sa"]
print(f"L_sa = L_bce + {consistency_weight} x consistency = {terms['bce']:.3f} + {consistency_weight} x "
      f"{terms['consistency']:.3f} = {terms['sa']:.3f}")
print(f"L = L_ide + {lambda_ia} L_ia + {lambda_sa} L_sa = {terms['ide']:.3f} + {lambda_ia} x {terms['ia']:.3f} + "
      f"{lambda_sa} x {terms['sa']:.3f} = {combined:.3f}   (CASNLoss returned {loss.item():.3f})")
assert abs(combined - loss.item()) < 1e-4 * max(1.0, abs(combined))

# %%
seeds = [seed, *more_seeds]
more = TrainConfig(epochs=casn_epochs, optimizer=optimizer, lr=finetune_lr or lr, schedule="cosine",
                   warmup_epochs=0.5, runtime=machine)
test_pairs = test_pair_loader(data, height, width, num_pairs=64, seed=seed)  # every model: the same pairs
records, all_runs = arms_over_seeds(data, start_config, seeds, [baseline, casn], more, settings, device, machine,
                                    test_pairs, pairs_per_batch=pairs_per_batch, head_warmup=head_warmup,
                                    num_workers=num_workers, checkpoint_dir=checkpoint_dir)
runs = {name: all_runs[(name, seed)] for name in (baseline, casn)}  # seed `seed`: the figures' models
warmup = runs[casn]["warmup"]
if warmup:
    print(f"Siamese head warm-up (seed {seed}): L_bce {warmup[0]:.3f} -> {warmup[-1]:.3f} over {len(warmup)} steps "
          "(ln 2 = 0.693)")

# %% [markdown]
# ## 3 · The loss terms over training
#
# The figure and the lines under it are seed `seed`'s run. What to look for: whether
# $L_{ide}$ keeps falling as identities are learnt (in two epochs at a tenth of the
# start's learning rate it need not: the start has converged). $L_{ia}$, the
# true class's probability on the masked image, is how much identity the erased image still
# gives away: low means the attention covered what identifies the person. $L_{bce}$ against
# chance, $\ln 2 \approx 0.69$: below it, the head tells same from different while SA trains
# the network (the warm-up line above says where it started; section 4 prints its ROC AUC
# on held-out test pairs). The consistency term, the mean profile distance of the positive
# pairs, is what SA asks to fall. The cell under the figure says what this run did.

# %%
fig = viz.plot_history(runs[casn]["history"], losses=("ide", "ia", "bce", "consistency"), metrics=())

# %%
history = runs[casn]["history"]
for key, label in (("ide", "L_ide"), ("ia", "L_ia"), ("bce", "L_bce"), ("consistency", "consistency term")):
    first, last = history[0][key], history[-1][key]
    moved = "fell" if last < first else "rose" if last > first else "stayed"
    print(f"{label}: {first:.3f} in the first epoch, {last:.3f} in the last ({moved})")
bce = history[-1]["bce"]
print(f"L_bce in the last epoch is {abs(math.log(2) - bce):.3f} {'below' if bce < math.log(2) else 'above'} "
      "chance (ln 2 = 0.693):",
      "the head tells same from different while SA trains" if bce < math.log(2) - 0.05 else
      "the head barely tells same from different while SA trains")

# %% [markdown]
# ## 4 · Retrieval and attention, measured
#
# Rank-1, mAP and mINP on the test identities, and the attention measured on 64 test
# pairs from two cameras (empty maps left out, and counted): the profile distance of the
# same person (lower: more consistent; SA's own attention for CASN, the retrieval
# similarity's for both), and attention on the person and on the identity cue as lift
# (notebook 02's unit; 1.0: an even spread), for the class Grad-CAM. One row per seed,
# then their mean: the spread between seeds is the noise a difference must beat. The CMC
# curves are seed `seed`'s.

# %%
columns = ("rank1", "mAP", "mINP", "positive_distance", "empty", "class_person_lift", "class_cue_lift")
print(f"{'variant':<10}{'seed':>5}{'rank-1':>8}{'mAP':>8}{'mINP':>8}{'same-person dist':>18}{'empty':>7}"
      f"{'person lift':>13}{'cue lift':>10}")
for name in (baseline, casn):
    mine = [r for r in records if r["variant"] == name]
    for r in [*mine, {"seed": "mean", **{k: np.nanmean([m[k] for m in mine]) for k in columns}}]:
        print(f"{name:<10}{r['seed']:>5}{100 * r['rank1']:>7.1f}%{100 * r['mAP']:>7.1f}%{100 * r['mINP']:>7.1f}%"
              f"{r['positive_distance']:>18.3f}{100 * r['empty']:>6.0f}%{r['class_person_lift']:>13.2f}"
              f"{r['class_cue_lift']:>10.2f}")
mine = [r for r in records if r["variant"] == casn]
if "sa_positive_distance" in mine[0]:
    print(f"{casn}'s own Siamese attention: same-person profile distance "
          f"{np.nanmean([r['sa_positive_distance'] for r in mine]):.3f} (mean over the seeds)")
    print(f"{casn}'s Siamese head on these held-out cross-camera pairs: L_bce "
          f"{np.mean([r['head_bce'] for r in mine]):.3f} (chance: ln 2 = 0.693), ROC AUC "
          + ", ".join(f"{r['head_auc']:.2f}" for r in mine) + " over the seeds (chance: 0.5)")
fig = viz.plot_cmc({name: run["result"]["cmc"] for name, run in runs.items()})

# %% [markdown]
# What the numbers say, computed from them: each difference is paired by seed and tested
# over the seeds, and the comparisons are judged together (notebook 05 explains the test;
# one seed never counts as an effect):

# %%
def per_seed(name, key):
    return [next(r[key] for r in records if r["variant"] == name and r["seed"] == s) for s in seeds]


comparisons = [dict(metric=label, control_name=baseline, variant_name=casn, control=per_seed(baseline, key),
                    variant=per_seed(casn, key), higher_is_better=higher, scale=scale, unit=unit)
               for key, label, higher, scale, unit in (
                   ("mAP", "mAP", True, 100, " points"), ("rank1", "rank-1", True, 100, " points"),
                   ("class_person_lift", "attention on the person (lift)", True, 1, ""),
                   ("positive_distance", "same-person profile distance", False, 1, ""))]
for line in verdict_lines(comparisons):
    print(line)

# %% [markdown]
# ## 5 · The same person, two cameras, two models
#
# For a few test people: a query and its match from another camera, with each model's
# attention on both images (Grad-CAM of their retrieval similarity). First IDE, then
# CASN(IDE). Consistent attention would light up the same rows of the person in both
# views; whether it does here is measured by the profile distance above, not by eye.

# %%
matches = cross_camera_matches(data, height, width, count=4)  # four people, two cameras each
q_images, g_images = matches["query"].to(device), matches["match"].to(device)
for name, run in runs.items():
    a1, a2 = similarity_attention(run["model"].eval(), q_images, g_images)
    fig = viz.show_pairs(q_images, g_images, [1] * len(q_images), a1.detach(), a2.detach())
    fig.suptitle(name)
    display(viz.jpeg(fig))
    if "query_mask" in matches:  # what the figure shows, in notebook 02's unit
        lift = person_lift(torch.cat([a1, a2]), torch.cat([matches["query_mask"], matches["match_mask"]]))
        print(f"{name}: attention on the person in these eight pictures {lift:.2f}x an even spread"
              + (" (below 1: more of it on the background than an even spread would put there)" if lift < 1 else ""))

# %% [markdown]
# ## 6 · Ranked results of CASN(IDE)

# %%
qf, _, _ = extract_features(runs[casn]["model"], loaders.query, device)
gf, _, _ = extract_features(runs[casn]["model"], loaders.gallery, device)
viz.jpeg(viz.plot_ranked(data.query, data.gallery, pairwise_distance(qf, gf, "cosine"), query_indices=[0, 1, 2],
                         topk=6))

# %% [markdown]
# ## Summary
#
# - A CASN step combines an identity batch ($L_{ide}$, $L_{ia}$) and a pair batch
#   ($L_{sa}$); `CASNLoss(ia=True, sa=True)` computes all of it, `fit` runs it.
# - The comparison that means something is against IDE trained *as long* from the *same
#   start*, repeated over seeds (`seed` and `more_seeds`, each its own start) so that every
#   difference is paired and tested; the verdict lines say what the numbers support.
#   Notebook 05 repeats it for every variant, and `docs/attention_study.md` and
#   `docs/positive_control.md` ask in which regime attention helps.
# - Attention can be measured on SynthPeople: consistency across cameras, and how much of
#   it falls on the person and on the identity cue.
#
# ## Exercises
#
# 1. **Write the lambda ramp.** `ramp_factor(progress, ramp_epochs)` returns the factor on
#    $\lambda_1$ and $\lambda_2$ after `progress` epochs (fractions too): it grows linearly
#    from 0 to 1 over `ramp_epochs`, then stays at 1; with `ramp_epochs = 0` it is always 1
#    (the paper's form). The cell after it checks it against `CASNLoss.ramp` and prints the
#    factor through the first epoch: you should see 0, 0.5 and 1 at the start, a quarter
#    and half of it with the defaults.
# 2. Set `lambda_sa = 0` and then `lambda_ia = 0`. Which of the measured attention numbers
#    moves with which term? Read the verdict lines: with three seeds only a large change
#    counts as an effect.
# 3. Double `pairs_per_batch`. You should see each epoch take longer in the per-epoch
#    lines. Does the consistency term fall faster?
# 4. Set `checkpoint_dir = "runs/ckpt"`, interrupt the kernel during CASN training, and
#    run the notebook again. What happens, and why do the results not change?
# 5. **Write CASN's loss.** `my_casn_loss(l_ide, l_ia, l_sa, lambda_ia, lambda_sa, factor)`
#    returns $L = L_{ide} + r\,(\lambda_1 L_{ia} + \lambda_2 L_{sa})$, $r$ the ramp's
#    `factor`. The check rejects the ramp on $L_{ide}$ too, the ramp forgotten and the two
#    lambdas swapped, then recomputes the first step's loss from its terms.

# %% tags=["exercise"]
def ramp_factor(progress, ramp_epochs):
    """The weight's factor after ``progress`` epochs: linear from 0 to 1 over ``ramp_epochs``."""
    # BEGIN SOLUTION
    if ramp_epochs <= 0:
        return 1.0
    return min(1.0, progress / ramp_epochs)
    # END SOLUTION


# %% tags=["check"]
# NBVAL_CHECK_OUTPUT
reference = variant_loss(casn, feature_dim=start.feature_dim, settings=replace(settings, ramp_epochs=0.5))
for progress in (0.0, 0.1, 0.25, 0.5, 0.75, 2.0):
    assert abs(ramp_factor(progress, 0.5) - reference.ramp(progress)) < 1e-12, f"ramp_factor disagrees at {progress}"
assert ramp_factor(0.3, 0) == 1.0, "no ramp: the paper's constant weights"
print("ramp_factor is correct")
print("factor at 0, 1/4 and 1/2 epoch:", [ramp_factor(p, ramp_epochs) for p in (0.0, 0.25, 0.5)])

# %% tags=["exercise"]
def my_casn_loss(l_ide, l_ia, l_sa, lambda_ia, lambda_sa, factor):
    """L = L_ide + factor (lambda_ia L_ia + lambda_sa L_sa): the ramp's factor on the attention terms."""
    # BEGIN SOLUTION
    return l_ide + factor * (lambda_ia * l_ia + lambda_sa * l_sa)
    # END SOLUTION


# %% tags=["check"]
# NBVAL_CHECK_OUTPUT
assert abs(my_casn_loss(2.0, 0.3, 0.9, 0.7, 1.3, 0.5) - 2.69) < 1e-9, \
    "L_ide 2.0, L_ia 0.3, L_sa 0.9, lambda_ia 0.7, lambda_sa 1.3, half-way up the ramp: L = 2.69"
assert abs(my_casn_loss(1.0, 0.5, 0.5, 1.0, 1.0, 0.0) - 1.0) < 1e-9, "at the ramp's start only L_ide counts"
print("my_casn_loss is correct")

# %%
first = my_casn_loss(terms["ide"], terms["ia"], terms["sa"], lambda_ia, lambda_sa, one_step.ramp(ramp_epochs))
assert abs(first - loss.item()) < 1e-4 * max(1.0, abs(first)), "the first step's loss, from its terms"
print(f"the first step's L from its terms: {first:.3f} (CASNLoss: {loss.item():.3f})")

# %% [markdown] tags=["solution"]
# <details><summary>Answers</summary>
#
# 1. See the function above: `min(1, progress / ramp_epochs)`, and 1 without a ramp.
# 2. With `lambda_sa = 0` (IDE+IA) nothing trains the profile distance; with
#    `lambda_ia = 0` (IDE+SA) nothing asks the class attention to cover more of the person.
#    What actually moves is for the verdict lines to say, over the seeds: a direction seen
#    on one seed alone is not an effect, whatever it is.
# 3. A step then sends twice as many pair images through the network (and through
#    Grad-CAM), so an epoch takes longer; the consistency estimate per step is less noisy,
#    which usually makes the term fall more smoothly rather than faster.
# 4. Each run saves `last.pt` after every epoch; on the second run `train_from` finds
#    them, skips the finished runs and continues the interrupted one from its last epoch,
#    with the same RNG state, so the numbers equal those of an uninterrupted run.
# 5. See the function above. The ramp multiplies only the attention terms: $L_{ide}$
#    trains at full weight from the first step, which is the point of the ramp.
# </details>

# %% tags=["metrics"]
metrics = {f"{name}_{k}": float(np.nanmean(per_seed(name, k)))  # means over the seeds
           for name in (baseline, casn)
           for k in ("rank1", "rank5", "mAP", "mINP", "positive_distance", "class_person_lift", "empty", "train_seconds")}
metrics.update({"arch": arch, "seeds": len(seeds), "device": str(device), "dataset": data.name,
                "casn_epochs": casn_epochs, "ide_epochs": ide_epochs,
                "num_valid_queries": runs[casn]["result"]["num_valid_queries"]})
print(json.dumps(metrics, indent=1))
