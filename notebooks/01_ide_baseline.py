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
# # 01 · The IDE baseline: re-ID as identity classification
#
# CASN builds on **IDE** (ID-discriminative embedding, Zheng et al. 2016): train a CNN to
# classify the *training* identities, then throw the classifier away and compare people
# by the feature just before it.
#
# You will learn:
# 1. the IDE model: a torchvision ResNet, pooling, an embedding layer and a classifier;
# 2. the training loop of `casn_lite.engine.fit` (forward, loss, backward, step);
# 3. how to read the curves, the CMC and the ranked results, and where the model fails.
#
# **Time:** about 60 s on a 2-core laptop at these defaults (10 epochs at 64 x 32), about
# 2.5 min at the `cpu` profile on a 2-core Xeon with AVX-512 (12 epochs at 128 x 64; 7.9
# min in the committed run, on a 2-core AMD EPYC with AVX2 only, about 3 times slower than the Xeon); on one
# GPU at the `gpu` profile: not measured yet (no GPU has run it).

# %% tags=["parameters"]
seed = 0
data_root = None  # a Market-1501 / DukeMTMC-reID / CUHK03-NP folder; None: generate SynthPeople
train_ids = 48
test_ids = 48
cameras = 4
images_per_camera = 4
height = 64  # input size the network sees (SynthPeople is drawn at 128 x 64)
width = 32
backbone = "resnet18"
pretrained = False  # ImageNet weights through torchvision (needs them downloaded once)
last_stride = 1
embed_dim = 512
epochs = 10
batch_size = 32
num_instances = 4  # images per identity in a batch (P x K sampling)
erase_p = 0.5  # random erasing: the share of training images with a rectangle blanked out
optimizer = "adam"
lr = 1e-3
schedule = "cosine"
warmup_epochs = 1.0
flip_eval = False  # average each feature with its mirror image's
num_workers = 0
runtime = {}  # how this machine runs it (casn_lite.engine.Runtime); {}: bf16, channels_last, in-memory images on a GPU only
checkpoint_dir = None  # a folder: save every epoch and resume an interrupted run
resume = True

# %%
import json

import numpy as np
import torch
from torch.utils.data import DataLoader

from casn_lite import viz
from casn_lite.data import (
    IdentitySampler,
    ImageDataset,
    SynthConfig,
    build_transforms,
    load_or_generate,
)
from casn_lite.engine import (
    Runtime,
    TrainConfig,
    default_device,
    evaluate,
    extract_features,
    fit,
    seed_everything,
)
from casn_lite.evaluation import evaluate_ranking, pairwise_distance
from casn_lite.models import build_model

seed_everything(seed)
device = default_device()
machine = Runtime.from_parameters(runtime)  # the profile's machine settings (GPU branches; an epoch cap in smoke runs)
print("device:", device)

# %% [markdown]
# ## 1 · Data and loaders
#
# Training batches hold $P$ identities $\times$ $K$ images each (`IdentitySampler`), with
# flips, pad-and-crop and, with `erase_p > 0`, random erasing (the `cpu` profile turns it
# off: on SynthPeople it spread the attention off the person and cost mAP in the project's
# attention study, `docs/attention_study.md`, one seed per setting). Query and gallery
# images are only resized.

# %%
# NBVAL_CHECK_OUTPUT
config = SynthConfig(train_ids=train_ids, test_ids=test_ids, cameras=cameras,
                     images_per_camera=images_per_camera, seed=seed)
data = load_or_generate(data_root, config)
print(data.summary())

train_set = ImageDataset(data.train, build_transforms(height, width, train=True, erase_p=erase_p))
sampler = IdentitySampler(train_set.pids, batch_size, num_instances, seed=seed)
train_loader = DataLoader(train_set, batch_size=batch_size, sampler=sampler, num_workers=num_workers,
                          drop_last=True)
test_tf = build_transforms(height, width)
query_loader = DataLoader(ImageDataset(data.query, test_tf), batch_size=128, num_workers=num_workers)
gallery_loader = DataLoader(ImageDataset(data.gallery, test_tf), batch_size=128, num_workers=num_workers)

# %% [markdown]
# ## 2 · The model
#
# $$\underbrace{A = \text{ResNet}_{\text{conv1..conv5}}(I)}_{\text{feature map}} \;\to\;
# \underbrace{f = \text{BN}(W_1\,\text{GAP}(A))}_{\text{embedding, used for retrieval}} \;\to\;
# \underbrace{s = W_2\,\text{dropout}(\text{ReLU}(f))}_{\text{identity logits}}$$
#
# `last_stride=1` keeps conv5 at 1/16 of the input instead of 1/32: a finer map, which
# matters later for attention.

# %%
model = build_model("ide", backbone, num_classes=data.num_train_pids, pretrained=pretrained,
                    last_stride=last_stride, embed_dim=embed_dim)
with torch.no_grad():
    out = model.eval()(torch.zeros(2, 3, height, width))
stride = 16 if last_stride == 1 else 32  # conv5 at 1/16 or 1/32 of the input
assert out.feature_map.shape[2:] == (height // stride, width // stride), "conv5 map size"
assert out.logits.shape == (2, data.num_train_pids), "one logit per training identity"
print(f"feature map A {tuple(out.feature_map.shape)}, embedding f {tuple(out.embedding.shape)}, "
      f"logits s {tuple(out.logits.shape)}")
print(f"{sum(p.numel() for p in model.parameters()) / 1e6:.1f} M parameters")

# %% [markdown]
# ## 3 · Training
#
# The IDE loss is softmax cross-entropy over the $N$ training identities:
# $$L_{ide} = -\log \frac{e^{s_y}}{\sum_{j=1}^{N} e^{s_j}}$$
#
# `fit` runs the epochs; the training step a reader should follow is
# `casn_lite.engine.train_one_epoch`, whose heart is five lines:
# ```python
# loss, terms = step(batch, progress=...)   # forward + L_ide (model and loss together)
# optimizer.zero_grad(set_to_none=True)
# loss.backward()
# optimizer.step()
# scheduler.step()
# ```
# After each epoch `fit` prints one line (its losses, metrics and seconds) under the live
# progress bar, so a saved notebook still shows how training went.
# We evaluate on the test set after every epoch, only to draw curves; nothing is tuned on it.

# %%
train_config = TrainConfig(epochs=epochs, optimizer=optimizer, lr=lr, schedule=schedule, warmup_epochs=warmup_epochs,
                           runtime=machine, checkpoint_dir=checkpoint_dir, resume=resume, desc="IDE")
history = fit(model, train_loader, train_config, device=device,
              eval_fn=lambda m: evaluate(m, query_loader, gallery_loader, device, flip=flip_eval))

# %%
fig = viz.plot_history(history, losses=("loss",), metrics=("rank1", "mAP"))

# %% [markdown]
# ## 4 · Results
#
# Chance level is about one over the number of test identities. Rank-1 and mAP are the
# paper's two numbers. **mINP** (mean inverse negative penalty, Ye et al. 2021) looks at the
# *hardest* match of each query: with $R$ true matches and the last of them at rank
# $r_{\text{hard}}$, $\mathrm{INP} = R / r_{\text{hard}}$, the share of the list down to that
# match that is correct. It is 1 when every match comes before any wrong person, and falls
# towards 0 as the hardest match sinks: higher is better, like rank-1 and mAP.

# %%
final = evaluate(model, query_loader, gallery_loader, device, flip=flip_eval)
chance = 1 / len({s.pid for s in data.query})
print(f"rank-1 {100 * final['rank1']:.1f} %  rank-5 {100 * final['rank5']:.1f} %  "
      f"mAP {100 * final['mAP']:.1f} %  mINP {100 * final['mINP']:.1f} %   (chance ≈ {100 * chance:.1f} %)")
fig = viz.plot_cmc({"IDE": final["cmc"]})

# %% [markdown]
# Ranked galleries: the query on the left, then the top matches from other cameras, a
# true match framed solid and ticked, someone else dashed and crossed. (Figures of photos
# are shown as JPEG: a saved notebook stays light.)

# %%
qf, _, _ = extract_features(model, query_loader, device, flip_eval)
gf, _, _ = extract_features(model, gallery_loader, device, flip_eval)
dist = pairwise_distance(qf, gf, "cosine")
viz.jpeg(viz.plot_ranked(data.query, data.gallery, dist, query_indices=[0, 1, 2], topk=6))

# %% [markdown]
# ## 5 · Failure cases
#
# We count the queries whose rank-1 match is wrong, and show the ones the model ranks
# *worst*: those whose first true match (from another camera) comes latest in the ranking.
# On SynthPeople we can ask *who* took the top spot when it was wrong: a member of the
# query's look-alike family, who differs only in a small cue, or anyone? And *where*: each
# camera films one scene, so a wrong match from the query's own camera shares its
# background, the whole-box colour that notebook 00's colour baseline matched on.

# %%
first_wrong, first_match_rank, same_scene, same_scene_chance = [], {}, [], []
for qi, q in enumerate(data.query):
    order = [g for g in torch.argsort(dist[qi]).tolist()
             if not (data.gallery[g].pid == q.pid and data.gallery[g].camid == q.camid)]  # as evaluation does
    top = data.gallery[order[0]]
    if top.pid != q.pid:
        first_wrong.append((qi, top.pid))
        same_scene.append(top.camid == q.camid)  # an impostor filmed by the query's own camera
        same_scene_chance.append(np.mean([data.gallery[g].camid == q.camid for g in order
                                          if data.gallery[g].pid != q.pid]))
    match = next((r for r, g in enumerate(order) if data.gallery[g].pid == q.pid), None)
    if match is not None:
        first_match_rank[qi] = match + 1
worst = sorted(first_match_rank, key=first_match_rank.get, reverse=True)[:3]
print(f"{len(first_wrong)} of {len(data.query)} queries have a wrong rank-1 match")
print("the three worst queries: first true match at rank", ", ".join(str(first_match_rank[qi]) for qi in worst))
same_scene_share = float(np.mean(same_scene)) if same_scene else float("nan")
if same_scene:
    print(f"{100 * same_scene_share:.0f} % of the wrong rank-1 matches come from the query's own camera (its scene); "
          f"{100 * np.mean(same_scene_chance):.0f} % of the other people's gallery images do")

lookalike_share = float("nan")
if data.name == "SynthPeople" and first_wrong:
    meta = json.loads((data.root / "meta.json").read_text())
    family = {p["pid"]: p["family"] for p in meta["identities"] if p["pid"] > 0}
    same_family = [family.get(data.query[qi].pid) == family.get(pid) for qi, pid in first_wrong]
    lookalike_share = float(np.mean(same_family))
    lookalike_chance = 2 / (test_ids - 1)  # about two other family members among the test people
    print(f"{100 * lookalike_share:.0f} % of those wrong rank-1 matches are look-alikes "
          f"(same family); by chance it would be about {100 * lookalike_chance:.0f} %:",
          "the mistakes concentrate on look-alikes" if lookalike_share > 2 * lookalike_chance else
          "no concentration on look-alikes")
viz.jpeg(viz.plot_ranked(data.query, data.gallery, dist, query_indices=worst, topk=6))

# %% [markdown]
# ## Summary
#
# - IDE learns identities as classes; the embedding before the classifier is the re-ID
#   feature, compared by cosine distance across cameras.
# - On SynthPeople compare it with the colour baselines of notebook 00, and look at who
#   takes the top spot when it is wrong (section 5 prints whether the mistakes concentrate
#   on look-alikes, the people who differ only in the small cues, and how many come from
#   the query's own camera, its scene, against that camera's share of the gallery).
# - Next (notebook 02): look at *where* the model looks with Grad-CAM, and ask it to look
#   at the whole person.
#
# ## Exercises
#
# 1. **Write the cosine distance.** `cosine_distance(qf, gf)` returns the query x gallery
#    matrix $1 - \frac{q \cdot g}{\|q\|\,\|g\|}$. The cell after it checks it against
#    `pairwise_distance(..., "cosine")` and then ranks with it: you should see the same
#    rank-1 as section 4.
# 2. Train with `last_stride = 2`. You should see conv5 at half the height and width
#    (section 2 prints it), a slightly faster epoch, and usually lower scores.
# 3. Turn on `flip_eval`. Why can averaging a feature with its mirror image help re-ID?
#    Expect a change of a point or two at most, in either direction, at this size.
# 4. Set `schedule = "step"` with `optimizer = "sgd"` and `lr = 0.03` (the paper's recipe,
#    which assumes ImageNet weights). You should see the loss fall later and rank-1 stay
#    well below Adam's after the same number of epochs. What do the curves tell you about training from
#    scratch?

# %% tags=["exercise"]
def cosine_distance(qf, gf):
    """1 - cosine similarity between every query row of ``qf`` [Q, D] and gallery row of
    ``gf`` [G, D]: a [Q, G] tensor."""
    # BEGIN SOLUTION
    q = torch.nn.functional.normalize(qf, dim=1)
    g = torch.nn.functional.normalize(gf, dim=1)
    return 1 - q @ g.T
    # END SOLUTION


# %% tags=["check"]
mine = cosine_distance(qf, gf)
assert mine.shape == (len(qf), len(gf)), "one row per query, one column per gallery image"
assert torch.allclose(mine, dist, atol=1e-5), "cosine_distance disagrees with pairwise_distance"
rank1 = evaluate_ranking(mine, [s.pid for s in data.query], [s.pid for s in data.gallery],
                         [s.camid for s in data.query], [s.camid for s in data.gallery])["cmc"][0]
print(f"cosine_distance is correct; rank-1 with it: {100 * rank1:.1f} % (section 4: {100 * final['rank1']:.1f} %)")

# %% [markdown] tags=["solution"]
# <details><summary>Answers</summary>
#
# 1. See the function above: normalise both sides to unit length, then one matrix product.
# 2. With stride 2, conv5 is half as tall and wide (4 x 2 instead of 8 x 4 for a 128 x 64
#    input, 2 x 1 instead of 4 x 2 for 64 x 32): training is a little faster, and the coarser map usually costs accuracy; it
#    also leaves Grad-CAM (notebook 02) almost nothing to localise with.
# 3. A person's identity does not change in a mirror, but the network's feature does a
#    little; the average is a cheap ensemble that removes part of that noise.
# 4. From scratch, SGD at 0.03 with BN is unstable or slow at first (the paper fine-tunes
#    ImageNet weights); the loss falls late and rank-1 lags far behind Adam's.
# </details>

# %% tags=["metrics"]
metrics = {"rank1": final["rank1"], "rank5": final["rank5"], "mAP": final["mAP"], "mINP": final["mINP"],
           "chance_rank1": chance, "lookalike_share_of_rank1_errors": lookalike_share,
           "same_scene_share_of_rank1_errors": same_scene_share,
           "epochs": epochs, "train_seconds": float(sum(h["seconds"] for h in history)),
           "device": str(device), "backbone": backbone, "dataset": data.name,
           "num_valid_queries": final["num_valid_queries"], "num_queries": final["num_queries"]}
print(json.dumps(metrics, indent=1))
