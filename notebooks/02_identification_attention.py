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
# # 02 · Identification attention: where does the network look?
#
# An IDE model can tell people apart by one small part (a bag, a colour patch) and ignore
# the rest of the person. CASN's first idea, **identification attention** (IA, after GAIN,
# Li et al. 2018), asks it to look at *all* of the person: find where the network looks for the
# true identity, erase that region, and punish the network if it can still recognise the
# identity in what is left.
#
# You will learn:
# 1. Grad-CAM, written from its equation, and what a trained IDE model looks at;
# 2. the soft mask $T(M)$ and the masked image $I^*$;
# 3. the attention mining loss $L_{ia}$;
# 4. first- versus second-order gradients through Grad-CAM;
# 5. what a short IDE+IA training changes, in numbers and in pictures.
#
# **Time:** about 160 s on a 2-core laptop at these defaults, of which
# about 80 s train the three seeds' IDE starts (later runs, and notebooks 03-05, load them
# and this notebook's runs from `runs/cache/`); about 15 min at the `cpu` profile on a
# 2-core Xeon with AVX-512, whose three 30-epoch starts take about 12 of them (50 min in
# the committed run, on a 2-core AMD EPYC with AVX2 only, about 3 times slower than the Xeon, the starts 12-13 min each); on one GPU at
# the `gpu` profile: not measured yet (no GPU has run it).

# %% tags=["parameters"]
seed = 0  # the data, the start the figures show and the first of the seeds compared
more_seeds = [1, 2]  # section 7 also trains both arms from these seeds' starts: a spread, and a paired test
data_root = None  # a Market-1501 / DukeMTMC-reID / CUHK03-NP folder; None: generate SynthPeople
train_ids = 48
test_ids = 48
cameras = 4
images_per_camera = 4
height = 64  # input size (a 64 x 32 image gives a 4 x 2 conv5 map: coarse, but fast)
width = 32
backbone = "resnet18"
pretrained = False
last_stride = 1
embed_dim = 512
ide_epochs = 8  # IDE first: the attention of an untrained network means nothing (cached, shared with 03-05)
ia_epochs = 2  # then this many more epochs, once with IA and once without (the control); 03-05: as long
pairs_per_batch = 8  # pairs drawn with each batch (IA ignores them): the batches of 03-05, which then load these runs
batch_size = 32
num_instances = 4
erase_p = 0.5  # random erasing: the share of training images with a rectangle blanked out
optimizer = "adam"
lr = 1e-3
finetune_lr = None  # learning rate after the IDE start (None: lr); lower keeps a converged start's focus
sigma = 0.5  # soft-mask threshold (GAIN's public code)
omega = 10.0  # soft-mask sharpness
ia_score = "prob"  # L_ia on the softmax probability ("prob") or the raw logit ("logit")
second_order = False  # back-propagate through the Grad-CAM weights too
lambda_ia = 1.0
ramp_epochs = 0.5  # lambda_ia grows from 0 over this many epochs (0: the paper's, no ramp)
ia_gradient = "all"  # "all": the paper's form; "attention": L_ia can move only the attention
num_workers = 0
runtime = {}  # how this machine runs it (casn_lite.engine.Runtime); {}: bf16, channels_last, in-memory images on a GPU only

# %%
import json
import time

import matplotlib.pyplot as plt
import numpy as np
import torch
from IPython.display import display
from torch.utils.data import default_collate

from casn_lite import viz
from casn_lite.ablation import StartConfig, arms_over_seeds, ide_start, start_loaders
from casn_lite.attention import erase_attended, grad_cam, mass_share, soft_mask, upsample
from casn_lite.attention_metrics import attention_lift, regions  # regions: the person, the cue
from casn_lite.data import (
    ImageDataset,
    SynthConfig,
    build_transforms,
    load_or_generate,
    test_pair_loader,
)
from casn_lite.engine import Runtime, TrainConfig, default_device, seed_everything
from casn_lite.losses import CASNSettings, attention_mining_loss, identification_attention
from casn_lite.verdict import verdict_lines

seed_everything(seed)
device = default_device()
machine = Runtime.from_parameters(runtime)  # the profile's machine settings (GPU branches; an epoch cap in smoke runs)
print("device:", device)

# %% [markdown]
# ## 1 · Data, and a few people to watch
#
# The same data and loaders as notebook 01 (`reid_loaders` builds them in one call). We
# also take one image of every *training* person to look at throughout (Grad-CAM of "the
# true class" needs a class the network knows), and show six of them, from six different
# look-alike families. On SynthPeople each image comes with a mask (person, identity cue),
# so we can measure where attention falls.

# %%
config = SynthConfig(train_ids=train_ids, test_ids=test_ids, cameras=cameras,
                     images_per_camera=images_per_camera, seed=seed)
data = load_or_generate(data_root, config)
start_config = StartConfig(arch="ide", backbone=backbone, height=height, width=width, epochs=ide_epochs,
                           seed=seed, batch_size=batch_size, num_instances=num_instances, optimizer=optimizer,
                           lr=lr, pretrained=pretrained, last_stride=last_stride, embed_dim=embed_dim,
                           erase_p=erase_p)
loaders = start_loaders(data, start_config, device, machine, num_workers)  # the start's batches, every variant's too
has_masks = data.name == "SynthPeople"

probe_set = ImageDataset(data.train, build_transforms(height, width),
                         mask_of=data.mask_path if has_masks else None)
first_of = {}
for i, s in enumerate(data.train):
    first_of.setdefault(s.pid, i)
probe_all = default_collate([probe_set[first_of[pid]] for pid in sorted(first_of)])  # one per person
shown = list(range(0, len(first_of), 3))[:6]  # six people from six families
probe = {k: v[shown] for k, v in probe_all.items()}
images, pids = probe["image"].to(device), probe["pid"].to(device)
print(f"{len(data.train)} training images of {data.num_train_pids} people; shown: {tuple(images.shape)}")
assert images.shape == (6, 3, height, width), "six people, one image each, at the input size"

# %% [markdown]
# ## 2 · An IDE model to look into
#
# An IDE training of `ide_epochs`, as in notebook 01 (`CASNLoss(ia=False, sa=False)` *is* the IDE loss:
# the variants of the paper are flags of one loss object, not copies of the loop).
# `ide_start` keeps the trained model in `runs/cache/`, keyed by everything that determines
# it, so notebooks 02-05 share one start and a second run loads it.

# %%
model, info = ide_start(data, start_config, device, machine)
history_ide = info["history"]
print(f"IDE start: {len(history_ide)} epochs, final loss {history_ide[-1]['loss']:.3f},",
      "loaded from the cache" if info["cached"] else f"trained in {info['seconds']:.0f} s")

# %% [markdown]
# ## 3 · Grad-CAM from its equation
#
# Take the last conv feature map $A$ ($K$ channels) and the score $s_c$ of the true class.
# Each channel's weight is its average gradient, and the map is the weighted sum of the
# channels, keeping the positive part:
#
# $$w_k = \frac{1}{hw}\sum_{i,j} \frac{\partial s_c}{\partial A_k^{ij}}, \qquad
#   M = \mathrm{ReLU}\Big(\sum_k w_k A_k\Big), \qquad
#   M \leftarrow \frac{M - \min M}{\max M - \min M}$$
#
# The gradient comes from `torch.autograd.grad`, not from hooks: the map stays part of
# the graph, so later a loss can be trained *through* it. Grad-CAM is taken in evaluation
# mode: in training mode batch norm and dropout would make each image's score depend on
# the rest of the batch and on chance, and the map would not be that image's own.

# %%
model.eval()
A = model.trunk(images)  # A: [B, K, h, w]
s = model.forward_head(A).logits  # s: identity scores
s_c = s.gather(1, pids[:, None]).squeeze(1)  # the true class's score
(dA,) = torch.autograd.grad(s_c.sum(), A, retain_graph=True)  # ds_c / dA_k
w = dA.mean(dim=(2, 3), keepdim=True)  # w_k: global average of the gradient
M = torch.relu((w * A).sum(dim=1, keepdim=True))  # ReLU(sum_k w_k A_k)
low, high = M.amin(dim=(2, 3), keepdim=True), M.amax(dim=(2, 3), keepdim=True)
M = (M - low) / (high - low).clamp_min(1e-8)  # per image to [0, 1]

# %%
attention = grad_cam(s_c, A)
print("map shape:", tuple(attention.shape))
print("by hand == casn_lite.attention.grad_cam:", torch.allclose(M, attention, atol=1e-6))
assert torch.allclose(M, attention, atol=1e-6), "Grad-CAM by hand disagrees with casn_lite"

# %% [markdown]
# What the IDE model looks at, for each of the six people (bright is where the score of the
# right identity comes from, on one fixed scale; a map with no attention leaves the picture
# evenly dark):

# %%
people = [f"person {data.train_pids[p]}" for p in probe["pid"].tolist()]  # as in the file names
viz.jpeg(viz.show_attention(images, {"IDE Grad-CAM": attention}, labels=people))

# %% [markdown]
# SynthPeople's masks turn the pictures into numbers, over one image of every training
# person: the share of the attention mass on the person (versus the background) and on
# the small identity cue (emblem, bag, stripes). A map can also be empty: when no channel
# adds positively to the class score, the ReLU leaves nothing (it would show above as an
# evenly dark picture).
#
# A share means little alone: a map spread evenly over the image puts on the person the
# share of the image the person covers. So the share is compared with that area, and their
# ratio is the attention's **lift** on a region: the share of the attention mass on the
# region divided by the region's share of the image (1.0: an even spread; above 1, the map
# prefers the region). This notebook and 03-05 report attention as lift.


# %%
def class_attention(m, probe):
    """Grad-CAM of the true class for every image of ``probe``."""
    out = m.eval()(probe["image"].to(device))
    return grad_cam(out.logits.gather(1, probe["pid"].to(device)[:, None]).squeeze(1), out.feature_map).detach().cpu()


def attention_shares(maps, probe):
    """Mean share of attention mass on the person and on the identity cue, each also as lift
    (the share over the region's share of the image), and the share of empty maps (left out
    of the rest)."""
    empty = (maps.flatten(1).amax(1) == 0).float().mean().item()
    if not has_masks:
        return {k: float("nan") for k in ("on_person", "person_lift", "on_cue", "cue_lift")} | {"empty": empty}
    full = upsample(maps, (height, width))
    shares = {}
    for region, where in (("person", regions(probe["mask"])["person"]), ("cue", regions(probe["mask"])["cue"])):
        share = mass_share(full, where)  # per image; NaN for an empty map
        shares[f"on_{region}"] = share.nanmean().item()
        shares[f"{region}_lift"] = attention_lift(share, where.flatten(1).float().mean(1))
    return shares | {"empty": empty}


shares_ide = attention_shares(class_attention(model, probe_all), probe_all)
if has_masks:
    person_area = regions(probe_all["mask"])["person"].float().mean().item()
    print(f"IDE attention: {100 * shares_ide['on_person']:.0f} % on the person "
          f"(who covers {100 * person_area:.0f} % of the image): lift {shares_ide['person_lift']:.2f}; "
          f"{100 * shares_ide['on_cue']:.0f} % on the identity cue: lift {shares_ide['cue_lift']:.2f}; "
          f"{100 * shares_ide['empty']:.0f} % of the maps are empty")

# %% [markdown]
# ## 4 · The soft mask and the masked image
#
# To erase "what the network looked at" and still train through it, CASN uses a soft
# threshold instead of $M > \sigma$:
#
# $$T(M) = \frac{1}{1 + e^{-\omega (M - \sigma)}}, \qquad I^* = I - T(M) \odot I$$
#
# Neither paper gives $\sigma$ and $\omega$; GAIN's public code uses $\sigma = 0.5$,
# $\omega = 10$. Images are normalised, so an erased pixel becomes 0: the mean colour.

# %%
values = torch.linspace(0, 1, 101)
fig, ax = plt.subplots(figsize=(4.5, 2.8))
for om in (5, 10, 30):
    ax.plot(values, soft_mask(values, sigma, om), label=f"omega = {om}")
ax.axvline(sigma, color="gray", ls=":", label=f"sigma = {sigma}")
ax.set(xlabel="attention M", ylabel="T(M)", title="the soft mask")
ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0))
fig.tight_layout()

# %%
mask = soft_mask(upsample(attention, (height, width)), sigma, omega)  # T(M) at image size
masked = erase_attended(images, mask)  # I* = I - T(M) I
with torch.no_grad():
    p_before = model(images).logits.softmax(1).gather(1, pids[:, None]).squeeze(1)
    p_after = model(masked).logits.softmax(1).gather(1, pids[:, None]).squeeze(1)
viz.jpeg(viz.show_masking(images[:4], attention[:4], mask[:4], masked[:4], p_before[:4].tolist(),
                          p_after[:4].tolist()))
if has_masks:  # where the erased region lies: on the person, or on the background?
    erased_on_person = mass_share(mask, regions(probe["mask"])["person"])  # the share of T(M)'s weight on the person
    person_share = regions(probe["mask"])["person"].float().flatten(1).mean(1)  # the person's share of the picture
    for k in range(4):
        lift = erased_on_person[k] / person_share[k]
        where = ("mostly on the person" if erased_on_person[k] > 0.5 else
                 "more on the person than an even spread would put there, but mostly on the background"
                 if lift > 1 else "mostly on the background, no more on the person than an even spread")
        print(f"{people[k]}: {100 * erased_on_person[k]:.0f} % of the erased weight is on the person, "
              f"who covers {100 * person_share[k]:.0f} % of the picture (lift {lift:.2f}): {where}")

# %% [markdown]
# ## 5 · The attention mining loss
#
# $$L_{ia} = \frac{1}{B}\sum_{b} p\big(c_b \mid I_b^*\big)$$
#
# the probability of the true identity on the masked image (`ia_score="logit"` uses the
# raw score $s_c(I^*)$, as GAIN's paper writes it). Minimising it means: *after erasing
# what you attended to, nothing of the identity may remain*. So the attention must spread
# over every part that tells who this is. `identification_attention` does sections 3 and
# 4 in one call and returns every intermediate.

# %%
ia = identification_attention(model, images, pids, sigma, omega, second_order=False)
l_ia = attention_mining_loss(ia.masked_logits, pids, ia_score)
print(f"mean p(true id): {p_before.mean():.3f} on I, {p_after.mean():.3f} on I*;  L_ia = {l_ia.item():.3f}")

# %% [markdown]
# ## 6 · First or second order?
#
# $L_{ia}$ reaches the network through the mask, i.e. through
# $M = \mathrm{ReLU}(\sum_k w_k A_k)$ (and, in the paper's form `ia_gradient="all"`, also
# through the masked image's forward pass). With `create_graph=False` (first order, as
# public GAIN code) the weights $w_k$ are constants and only $A$ carries gradient; with
# `create_graph=True` (second order) the gradient also flows through
# $w_k = \mathrm{GAP}(\partial s_c / \partial A_k)$: a derivative of a derivative.
#
# A property of this head: after $A$ it is average pooling, a linear layer, batch norm in
# evaluation mode, ReLU and a linear layer, all piecewise linear, so
# $\partial s_c / \partial A$ does not change when $A$ changes a little. The second-order
# path then adds nothing to the trunk's gradient; it reaches only the head's weights,
# through which $w_k$ is computed. The cell measures both, and the cost.

# %%
model.train()
first_conv, embedding_layer = model.trunk[0].weight, model.embed[0].weight
grads, head_grads, seconds = {}, {}, {}
for order in (False, True, False, True):  # each twice: the first call of a kind warms up
    tic = time.perf_counter()
    model.zero_grad()
    torch.manual_seed(seed)  # the same dropout in the masked pass both times
    ia = identification_attention(model, images, pids, sigma, omega, second_order=order, gradient=ia_gradient)
    attention_mining_loss(ia.masked_logits, pids, ia_score).backward()
    seconds[order] = time.perf_counter() - tic
    grads[order] = first_conv.grad.flatten().clone()
    head_grads[order] = 0.0 if embedding_layer.grad is None else embedding_layer.grad.norm().item()
cosine = torch.nn.functional.cosine_similarity(grads[False], grads[True], dim=0).item()
print(f"first conv layer: cosine(first-order, second-order gradient) = {cosine:.4f}")
print(f"embedding layer: gradient norm {head_grads[False]:.2e} (first order) vs {head_grads[True]:.2e} (second)")
print(f"one IA step: {1000 * seconds[False]:.0f} ms (first order) vs {1000 * seconds[True]:.0f} ms (second); "
      f"{'second order costs more' if seconds[True] > 1.2 * seconds[False] else 'no clear difference in cost'}")

# %% [markdown]
# ## 7 · A short IDE+IA training, against a control, over seeds
#
# From the same IDE weights, train `ia_epochs` more epochs twice: once with the IDE loss
# alone (the control) and once with
#
# $$L = L_{ide} + \lambda_{1} L_{ia}.$$
#
# Same data order, same seed: the only difference is the IA term. One run cannot tell an
# effect from noise (two trainings that differ only in their seed can differ by several
# mAP and rank-1 points: section 8's table), so the pair of runs is repeated from the starts of `more_seeds` too (each seed
# its own start, trained once and shared with notebooks 03-05, as are the runs: 03-05 load
# them from `runs/cache/`): one paired difference per seed. (The masked images go
# through the network as an ordinary training forward, as in the paper
# (`ia_gradient="all"`), without moving batch norm's running statistics: the network can
# then lower $L_{ia}$ by moving its attention *or* by learning to be unsure of any image
# with a hole. With `ia_gradient="attention"` the masked images are scored by the network
# taken as a fixed function, and only the attention can move. `docs/attention_study.md`
# compares the two.)

# %%
settings = CASNSettings.from_parameters(globals())  # lambda_ia, sigma, omega, ... from the parameters cell
seeds = [seed, *more_seeds]
more = TrainConfig(epochs=ia_epochs, optimizer=optimizer, lr=finetune_lr or lr, schedule="cosine",
                   warmup_epochs=0.5, runtime=machine)
test_pairs = test_pair_loader(data, height, width, num_pairs=64, seed=seed)  # every model: the same pairs
records, runs = arms_over_seeds(data, start_config, seeds, ["IDE", "IDE+IA"], more, settings, device, machine,
                                test_pairs, pairs_per_batch=pairs_per_batch,
                                num_workers=num_workers)  # copies of each seed's start, seeded
fig = viz.plot_history(runs[("IDE+IA", seed)]["history"], losses=("loss", "ide", "ia"), metrics=())

# %% [markdown]
# ## 8 · Before and after
#
# The same six people under each model's Grad-CAM (seed `seed`); then the numbers, per seed
# and their mean: attention on the person and on the cue as lift, over one image of every
# training person (SynthPeople), empty maps, the area the soft mask erases, and retrieval on
# the *test* identities.

# %%
maps, rows = {}, []
for (name, s), run in runs.items():
    every = class_attention(run["model"], probe_all)
    if s == seed:
        maps[name] = every[shown]
    erased = soft_mask(upsample(every, (height, width)), sigma, omega).mean().item()
    rows.append({"variant": name, "seed": s, **attention_shares(every, probe_all), "erased_area": erased,
                 "rank1": run["result"]["rank1"], "mAP": run["result"]["mAP"]})
display(viz.jpeg(viz.show_attention(images, {f"{k} Grad-CAM": v for k, v in maps.items()}, labels=people)))
lifts, percents = ("person_lift", "cue_lift"), ("empty", "erased_area", "rank1", "mAP")
print(f"{'variant':<8} {'seed':>5} {'person lift':>12} {'cue lift':>9} {'empty':>7} {'erased':>8} {'rank-1':>8} "
      f"{'mAP':>7}")
for name in ("IDE", "IDE+IA"):
    mine = [r for r in rows if r["variant"] == name]
    for r in [*mine, {"seed": "mean", **{k: np.nanmean([m[k] for m in mine]) for k in (*lifts, *percents)}}]:
        print(f"{name:<8} {r['seed']:>5} {r['person_lift']:>12.2f} {r['cue_lift']:>9.2f} "
              + " ".join(f"{100 * r[k]:>{w}.{d}f}%" for k, w, d in
                         zip(percents, (6, 7, 7, 6), (0, 0, 1, 1), strict=True)))
if has_masks:
    print(f"(lift 1.0: an even spread; the person covers {100 * person_area:.0f} % of the image)")

# %% [markdown]
# What the numbers support, computed from them: each difference IDE+IA - IDE is paired by
# seed, tested by a paired t-test over the seeds, and the comparisons are judged together
# (notebook 05 explains the test; one seed never counts as an effect).

# %%
def per_seed(name, key):
    return [next(r[key] for r in rows if r["variant"] == name and r["seed"] == s) for s in seeds]


comparisons = [dict(metric=label, control_name="IDE", variant_name="IDE+IA", control=per_seed("IDE", key),
                    variant=per_seed("IDE+IA", key), higher_is_better=higher, scale=scale, unit=unit)
               for key, label, higher, scale, unit in (
                   ("person_lift", "attention on the person (lift)", True, 1, ""),
                   ("erased_area", "erased area", None, 100, " points"), ("mAP", "mAP", True, 100, " points"),
                   ("rank1", "rank-1", True, 100, " points"))]
for line in verdict_lines(comparisons):
    print(line)

# %% [markdown]
# ## Summary
#
# - Grad-CAM is three lines: average the gradient of a score over each channel, weight the
#   channels, keep the positive part. With `torch.autograd.grad` it stays differentiable.
# - IA erases what the network attends to, $I^* = I - T(M) \odot I$, and trains the
#   network so that the identity cannot be recognised in what is left ($L_{ia}$). The
#   attention has to cover every part of the person that carries identity.
# - First order (GAIN's code) treats the channel weights as constants; second order also
#   differentiates through them. With this piecewise-linear head that adds gradient to the
#   head's weights only, not to the trunk's (section 6 measures it).
# - Next (notebook 03): the second half of CASN makes the attention of the *same person*
#   agree across cameras.
#
# ## Exercises
#
# 1. **Write the soft mask.** `my_soft_mask(M, sigma, omega)` returns
#    $T(M) = 1 / (1 + e^{-\omega (M - \sigma)})$ for a tensor of attention values. The cell
#    after it checks it against `casn_lite.attention.soft_mask`, uses it to erase the six
#    people and prints for how many of them p(true id) is lower on $I^*$ than on $I$. The
#    mean falls (section 5), but not necessarily for every person: an empty map erases
#    almost nothing, and a map on the background leaves the person's evidence in $I^*$.
# 2. Set `sigma = 0.2`, then `sigma = 0.8`. You should see the erased area (section 8's
#    table) grow with 0.2 and shrink with 0.8. What do you expect for $L_{ia}$ in each case?
# 3. Run with `second_order = True`. Section 6 prints the cost: you should see a cosine of
#    1.0000 for the first conv layer and a non-zero extra gradient only in the head.
# 4. Train IA from scratch (`ide_epochs = 0`, `ia_epochs = 9`). Why does the paper start
#    the attention losses from a network that already classifies?
# 5. Use `ia_score = "logit"`. Why might an unbounded score be harder to train with?
# 6. **Write I\* and L_ia.** `my_ia_loss(classify, images, pids, T)` erases the soft mask's
#    share of each image, $I^* = I - T(M) \odot I$, scores $I^*$ with `classify` (images to
#    class scores) and returns $L_{ia}$, the mean over the images of the probability of each
#    one's true class on $I^*$. The cell after it checks it against `casn_lite` on made-up
#    images (it rejects keeping the attended part, $-\log p$, the best class instead of the
#    true one, the raw score, a sum) and prints $L_{ia}$ of the six people.

# %% tags=["exercise"]
def my_soft_mask(M, sigma, omega):
    """T(M): a sigmoid of sharpness ``omega`` centred at ``sigma``, element-wise."""
    # BEGIN SOLUTION
    return torch.sigmoid(omega * (M - sigma))
    # END SOLUTION


# %% tags=["check"]
values = torch.linspace(0, 1, 11)
assert torch.allclose(my_soft_mask(values, 0.5, 10.0), soft_mask(values, 0.5, 10.0), atol=1e-6), \
    "my_soft_mask disagrees with casn_lite.attention.soft_mask"
assert abs(my_soft_mask(torch.tensor(0.5), 0.5, 10.0).item() - 0.5) < 1e-6, "T(sigma) must be 1/2"
erased_mine = erase_attended(images, my_soft_mask(upsample(attention, (height, width)), sigma, omega))
with torch.no_grad():
    p_mine = model.eval()(erased_mine).logits.softmax(1).gather(1, pids[:, None]).squeeze(1)
print("my_soft_mask is correct")
print(f"p(true id) on I* lower than on I for {(p_mine <= p_before + 1e-6).sum().item()} of {len(p_mine)} people")

# %% tags=["exercise"]
def my_ia_loss(classify, images, pids, T):
    """L_ia: the mean probability of the true class on I* = I - T * I (T the soft mask, at
    the images' size); ``classify`` maps images to class scores [B, classes]."""
    # BEGIN SOLUTION
    erased = images - T * images  # I*
    probabilities = classify(erased).softmax(dim=1)
    return probabilities.gather(1, pids[:, None]).mean()
    # END SOLUTION


# %% tags=["check"]
torch.manual_seed(0)  # made-up images, masks and a made-up classifier: the check needs no training
toy_classify = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 4, 5))
toy_images, toy_T, toy_pids = torch.randn(6, 3, 8, 4), torch.rand(6, 1, 8, 4), torch.tensor([0, 1, 2, 3, 4, 0])
expected = attention_mining_loss(toy_classify(erase_attended(toy_images, toy_T)), toy_pids)
assert torch.allclose(my_ia_loss(toy_classify, toy_images, toy_pids, toy_T), expected, atol=1e-6), \
    "my_ia_loss disagrees with casn_lite.losses.attention_mining_loss on I* = erase_attended(I, T)"
print("my_ia_loss is correct")

# %%
with torch.no_grad():
    T_six = my_soft_mask(upsample(attention, (height, width)), sigma, omega)
    mine = my_ia_loss(lambda x: model.eval()(x).logits, images, pids, T_six)
print(f"L_ia of the six people: {mine.item():.3f} (their mean p(true id) on I: {p_before.mean().item():.3f})")

# %% [markdown] tags=["solution"]
# <details><summary>Answers</summary>
#
# 1. See the function above (`torch.sigmoid` is the logistic function).
# 2. A lower sigma erases more (everything the network glances at), so $I^*$ keeps little
#    and $L_{ia}$ is easy to make small; a higher sigma erases only the peak, and the
#    network must spread its attention much further before $L_{ia}$ falls.
# 3. Second order back-propagates through the gradient of the class score. Section 6
#    times one step each way and prints whether the difference is clear; for the trunk the
#    two gradients are the same (cosine 1), because the head after $A$ is piecewise linear,
#    so only the head's own weights receive extra gradient. Expect the maps and scores to
#    change little.
# 4. An untrained network's Grad-CAM is noise: it erases random regions, and $L_{ia}$
#    then mostly teaches the classifier to be unsure. Attention mining needs a network
#    that already finds *some* identity evidence, which it then pushes to find more.
# 5. Minimising a logit has no floor: the network can drive $s_c(I^*)$ towards minus
#    infinity, for example by making all logits of masked-looking images very negative,
#    instead of spreading its attention. The probability is bounded by 0.
# 6. See the function above: erase, classify, softmax, pick each image's own class with
#    `gather`, average. Erasing keeps $I - T \odot I$, the part the network did *not* attend
#    to; the loss is small when that part no longer says who it is.
# </details>

# %% tags=["metrics"]
metrics = {f"{name}_{k}": float(np.nanmean(per_seed(name, k)))  # means over the seeds
           for name in ("IDE", "IDE+IA")
           for k in ("rank1", "mAP", "on_person", "on_cue", "person_lift", "cue_lift", "empty", "erased_area")}
metrics.update({"seeds": len(seeds), "ide_shares_on_person": shares_ide["on_person"],
                "ide_person_lift": shares_ide["person_lift"],
                "grad_cosine_first_vs_second": cosine,
                "train_seconds": float(sum(h["seconds"] for r in runs.values() for h in r["history"]) + info["seconds"]),
                "device": str(device), "dataset": data.name,
                "num_valid_queries": next(iter(runs.values()))["result"]["num_valid_queries"]})
print(json.dumps(metrics, indent=1))
