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
# # 00 · Person re-identification: the data and how we score it
#
# **Re-identification (re-ID)**: given a picture of a person seen by one camera (the *query*),
# find the pictures of the same person taken by *other* cameras in a large collection (the
# *gallery*). It is retrieval, not classification: the people at test time were never seen
# in training. These notebooks rebuild one re-ID method, CASN (Zheng et al., *Re-Identification
# with Consistent Attentive Siamese Networks*, CVPR 2019,
# [arXiv:1811.07487](https://arxiv.org/abs/1811.07487)), small enough for a laptop.
#
# You will learn:
# 1. what **SynthPeople**, our generated dataset, looks like, and why it is hard;
# 2. the **Market-1501 layout** every re-ID dataset here follows;
# 3. how **CMC** and **mAP** score a ranking, computed by hand on a toy, then with
#    `casn_lite.evaluation.evaluate_ranking`;
# 4. why *where you look* matters: colour-histogram baselines.
#
# **Time:** about 20 s on a 2-core laptop at these defaults (no training here), and about
# 10 s at the `cpu` profile (8 s on a 2-core Xeon with AVX-512; 16 s in the committed run,
# on a 2-core AMD EPYC with AVX2 only, about 3 times slower than the Xeon); on one GPU at the `gpu` profile: not
# measured yet (no GPU has run it).

# %% tags=["parameters"]
seed = 0
data_root = None  # a Market-1501 / DukeMTMC-reID / CUHK03-NP folder; None: generate SynthPeople
train_ids = 48
test_ids = 48
cameras = 4
images_per_camera = 4
height = 128
width = 64

# %%
import itertools
import json

import matplotlib.pyplot as plt
import numpy as np
from IPython.display import display

from casn_lite import viz
from casn_lite.data import SynthConfig, load_or_generate, read_image
from casn_lite.engine import seed_everything
from casn_lite.evaluation import evaluate_ranking, pairwise_distance, same_camera_errors

seed_everything(seed)

# %% [markdown]
# ## 1 · The data
#
# Without a `data_root`, we generate SynthPeople (a few seconds; reused when it exists).

# %%
config = SynthConfig(train_ids=train_ids, test_ids=test_ids, cameras=cameras,
                     images_per_camera=images_per_camera, height=height, width=width, seed=seed)
data = load_or_generate(data_root, config)
print(data.summary())

# %% [markdown]
# Every dataset here has three folders. `bounding_box_train/` trains the model;
# `query/` and `bounding_box_test/` (the gallery) hold *other* people, used only to test.
# A file name carries the identity (*pid*) and the camera:
#
# `0002_c1s1_000451_03.jpg` → person 0002, camera 1 (sequence 1, frame 451, box 3).
#
# The gallery above counts one identity more than the query: pid 0, the *distractors*,
# people who appear in no query (as in Market-1501), so any rank they take is a wrong one;
# files with pid -1 are *junk*, bad detections, which the loader drops and scoring ignores.

# %%
# NBVAL_CHECK_OUTPUT
for sample in data.query[:3]:
    print(sample.path.name, "→ pid", sample.pid, "camera", sample.camid + 1)

# %% [markdown]
# One person, every camera that saw them. Each camera films its own scene with its own
# light and mostly sees people from one side. People are named by the number in their
# file names ("person 2" is `0002_...`); for training, `data.train_pids` maps the class
# labels 0, 1, 2, ... the network learns back to those numbers.

# %%
label = data.train[0].pid  # a class label
viz.jpeg(viz.identity_across_cameras(data.train, pid=label, name=data.train_pids[label]))

# %% [markdown]
# The hard part: people come in **look-alike families** that share every coarse attribute
# (clothes, hair, build). Only small cues (a chest emblem, a bag, a stripe pattern) tell them
# apart, and a camera that sees someone from behind hides the emblem.

# %%
if data.name == "SynthPeople":
    meta = json.loads((data.root / "meta.json").read_text())
    people = [p for p in meta["identities"] if p["split"] == "train"]
    family = people[0]["family"]
    members = [p for p in people if p["family"] == family]
    fig, axes = plt.subplots(1, len(members), figsize=(2.2 * len(members), 3))
    for ax, person in zip(np.atleast_1d(axes), members, strict=True):
        label = data.train_pids.index(person["pid"])
        shot = next(s for s in data.train if s.pid == label)
        ax.imshow(read_image(shot.path))
        ax.set_title(f"person {person['pid']}\n{person['emblem']}, {person['bag']},\n{person['pattern']}",
                     fontsize=8)
        ax.axis("off")
    fig.suptitle("one look-alike family: same clothes, different small cues")
    fig.tight_layout()
    display(viz.jpeg(fig))

# %% [markdown]
# SynthPeople also writes a **mask** per image: background, person, identity cue. Later
# notebooks use them to *measure* where a network looks.

# %%
if data.name == "SynthPeople":
    display(viz.jpeg(viz.image_and_mask(data, data.query[:3])))

# %% [markdown]
# ## 2 · Scoring a ranking: CMC and mAP, by hand
#
# For each query we sort the gallery by distance. Two rules of the Market-1501 protocol:
# gallery images of the query's person **from the query's own camera** are ignored (too
# easy), and a query with no match left is skipped.
#
# A toy: one query (person 1, camera 0) and six gallery images.

# %%
q_pids, q_cams = np.array([1]), np.array([0])
g_pids = np.array([1, 2, 1, 3, 1, 4])
g_cams = np.array([0, 1, 1, 1, 2, 1])
toy_dist = np.array([[0.1, 0.2, 0.3, 0.4, 0.5, 0.6]])

# %% [markdown]
# Sorted by distance, gallery image 0 (person 1 **from camera 0**) is dropped, which leaves
# the ranking: person 2, **1**, 3, **1**, 4. The true matches sit at ranks 2 and 4.
#
# **CMC** at rank $k$: 1 if a true match is within the top $k$. Here $[0, 1, 1, 1, 1]$.
# Averaged over queries it is the *rank-k accuracy*; rank-1 is the headline number.
#
# **Average precision** over the $R$ true matches, with precision $P(k)$ at each match rank:
# $$\mathrm{AP} = \frac{1}{R}\sum_{k:\,\text{match at }k} P(k) = \frac{1}{2}\left(\frac{1}{2} + \frac{2}{4}\right) = 0.5$$
# **mAP** is its mean over queries: it rewards finding *all* matches early, not only the first.

# %%
# NBVAL_CHECK_OUTPUT
by_hand = {"cmc": [0, 1, 1, 1, 1], "AP": (1 / 2 + 2 / 4) / 2}
res = evaluate_ranking(toy_dist, q_pids, g_pids, q_cams, g_cams, max_rank=5)
print("by hand:", by_hand)
print("evaluate_ranking: cmc", res["cmc"].tolist(), " mAP", res["mAP"])
assert res["cmc"].tolist() == by_hand["cmc"] and abs(res["mAP"] - by_hand["AP"]) < 1e-12

# %% [markdown]
# ## 3 · Baselines without learning: where you look decides everything
#
# Random features give chance level. Then two colour histograms (4 bins per channel):
# one over the **whole box**, one over its **centre**, where the person usually stands.

# %%
def colour_histogram(path, bins=4, centre=False):
    """Joint RGB histogram of an image (or of its central region), normalised to sum 1."""
    pixels = np.asarray(read_image(path))
    if centre:
        h, w = pixels.shape[:2]
        pixels = pixels[int(0.15 * h):int(0.9 * h), int(0.3 * w):int(0.7 * w)]
    codes = pixels.reshape(-1, 3) // (256 // bins)
    codes = codes[:, 0] * bins * bins + codes[:, 1] * bins + codes[:, 2]
    hist = np.bincount(codes, minlength=bins**3).astype(np.float32)
    return hist / hist.sum()


ids = ([s.pid for s in data.query], [s.pid for s in data.gallery],
       [s.camid for s in data.query], [s.camid for s in data.gallery])


def score(q_feats, g_feats):
    """evaluate_ranking on query x gallery features (cosine distance), and the share of the
    wrong rank-1 matches that the query's own camera filmed (same scene, another person)."""
    distances = pairwise_distance(q_feats, g_feats, "cosine")
    return {**evaluate_ranking(distances, *ids), "same_camera_errors": same_camera_errors(distances, *ids)}


rng = np.random.default_rng(seed)
results = {"random": score(rng.standard_normal((len(data.query), 64)),
                           rng.standard_normal((len(data.gallery), 64)))}
for name, centre in (("colour, whole box", False), ("colour, centre", True)):
    results[name] = score(np.stack([colour_histogram(s.path, centre=centre) for s in data.query]),
                          np.stack([colour_histogram(s.path, centre=centre) for s in data.gallery]))
# by chance: the share of the other people's gallery images that the query's camera filmed
own_camera = np.mean([np.mean([g.camid == q.camid for g in data.gallery if g.pid != q.pid]) for q in data.query])
for name, r in results.items():
    print(f"{name:>18}: rank-1 {100 * r['cmc'][0]:5.1f} %   mAP {100 * r['mAP']:5.1f} %   "
          f"wrong rank-1 matches from the query's own camera: {100 * r['same_camera_errors']:3.0f} %")
print(f"(by chance {100 * own_camera:.0f} % of the other people's gallery images come from the query's camera)")

# %%
fig = viz.plot_cmc({name: r["cmc"] for name, r in results.items()})

# %% [markdown]
# The whole-box histogram is mostly *background*, so it matches the **scene**: nearly all
# of its wrong rank-1 matches are other people filmed by the query's own camera (the last
# column, against the share chance gives), which can never be right, and it lands at or
# below chance. The centre crop still holds some background, and its mistakes lean the
# same way. Looking at the centre is enough to find the clothes' colours, far
# above chance, but it cannot separate look-alikes, whose clothes are identical.
# A good re-ID model must learn *where* to look and *what* small cues to use:
# attention, which is what CASN is about.

# %% [markdown]
# ## Summary
#
# - A re-ID set has training identities and *disjoint* test identities, split into a query
#   and a gallery; file names carry person and camera.
# - CMC@k asks "is a match in the top k?"; AP asks "how early are *all* matches?". Same-camera
#   matches are ignored, so the task is cross-camera.
# - Where a method looks decides what it finds: whole-box colour matches scenes (below
#   chance), centre colour matches clothes (far above chance) and stops at look-alikes. The
#   model must learn to find the person and their small, view-dependent cues; notebook 01
#   trains one.
#
# ## Exercises
#
# Exercise 1 asks for code: write the body of the function (in a student copy it is a stub
# that raises `NotImplementedError`); the two cells after it check your function on made-up
# rankings, and the next one uses it. The others say what you should see.
#
# 1. **Write average precision.** `average_precision(is_match)` takes one query's ranked
#    gallery as a list of booleans (True where the person is the query's, same-camera
#    matches already removed) and returns its AP, as defined in section 2. The checks try
#    it on five made-up lists, the toy (AP 0.5) among them, and print nothing when it
#    passes; the cell after it prints your mAP of the centre-colour baseline: you should see
#    it equal `evaluate_ranking`'s.
# 2. In the toy, move the second true match from rank 4 to rank 3. Work out the new AP by
#    hand, then check it with your function: you should get a value between 0.5 and 0.75.
# 3. Why does the protocol drop same-camera matches? What does rank-1 of the whole-box
#    colour baseline become if it keeps them? (Hint: in `score`, replace the gallery camera
#    ids by a value no query has.) You should see it jump far above the centre histogram's.
# 4. Look at `meta.json`: which cue is hidden from which viewpoint? Find a pair of
#    look-alikes that a camera filming from behind can barely separate.

# %% tags=["exercise"]
def average_precision(is_match):
    """AP of one ranked list: the mean, over the true matches, of the precision at each
    match's rank. ``is_match``: booleans in rank order. No match: nan."""
    # BEGIN SOLUTION
    is_match = np.asarray(is_match, dtype=bool)
    ranks = np.flatnonzero(is_match) + 1  # 1-based ranks of the true matches
    if len(ranks) == 0:
        return float("nan")
    precision_at_match = np.arange(1, len(ranks) + 1) / ranks
    return float(precision_at_match.mean())
    # END SOLUTION


# %% tags=["check"]
# made-up ranked lists (True: a match) and their AP: first the toy of section 2 and lists on
# which the reciprocal rank, 1 / the rank of the first match, gives the AP too
for is_match, ap in (([False, True, False, True, False], (1 / 2 + 2 / 4) / 2),  # the toy of section 2
                     ([True, True], 1.0),
                     ([False, False, True], 1 / 3)):
    assert abs(average_precision(is_match) - ap) < 1e-12, f"the AP of {is_match} is {ap:.4f}"

# %% tags=["check"]
# then lists on which it does not: AP averages the precision at every match
for is_match, ap in (([True, False, True], (1 / 1 + 2 / 3) / 2),
                     ([False, True, True, False, True], (1 / 2 + 2 / 3 + 3 / 5) / 3)):
    assert abs(average_precision(is_match) - ap) < 1e-12, f"the AP of {is_match} is {ap:.4f}"

# %%
# NBVAL_CHECK_OUTPUT
centre_q = np.stack([colour_histogram(s.path, centre=True) for s in data.query])
centre_g = np.stack([colour_histogram(s.path, centre=True) for s in data.gallery])
centre_dist = pairwise_distance(centre_q, centre_g, "cosine")
aps = []
for i, q in enumerate(data.query):
    kept = [g for g in np.argsort(centre_dist[i], kind="stable")
            if not (data.gallery[g].pid == q.pid and data.gallery[g].camid == q.camid)]
    flags = [data.gallery[g].pid == q.pid for g in kept]
    if any(flags):
        aps.append(average_precision(flags))
mine, theirs = float(np.mean(aps)), results["colour, centre"]["mAP"]
print(f"your mAP of the centre colour baseline: {100 * mine:.2f} %  (evaluate_ranking: {100 * theirs:.2f} %)")
assert abs(mine - theirs) < 1e-6, "your average_precision disagrees with evaluate_ranking"
print("average_precision is correct")

# %% [markdown] tags=["solution"]
# <details><summary>Answers</summary>
#
# 1. See the function above: the precision at the $k$-th match's rank $r_k$ is $k / r_k$.
# 2. The matches are then at ranks 2 and 3: AP = (1/2 + 2/3) / 2 ≈ 0.583
#    (`average_precision([False, True, True, False, False])`).
# 3. A camera films the same background under the same light, so a same-camera match is
#    found by scenery, not by the person: keeping them inflates rank-1 a lot for the
#    whole-box histogram. Pass `[99] * len(data.gallery)` as the gallery camera ids to see it.
# 4. Emblems are painted only on the front and (foreshortened) on the side; bags and
#    sleeve patterns show from behind too. The cell below finds, in this dataset, the
#    look-alike pair that differs least in what a camera behind them sees.
# </details>

# %% tags=["solution"]
if data.name == "SynthPeople":
    CUES = ("emblem", "emblem_colour", "bag", "bag_colour", "pattern", "pattern_colour")
    seen_from_behind = CUES[2:]  # the emblem is on the chest
    pairs = []
    for a, b in itertools.combinations(meta["identities"], 2):
        if a["family"] == b["family"] and a["pid"] > 0 and b["pid"] > 0:
            differ = [k for k in CUES if a[k] != b[k]]
            pairs.append((sum(k in seen_from_behind for k in differ), a["pid"], b["pid"], differ))
    visible, pa, pb, differ = min(pairs)
    print(f"persons {pa} and {pb} (one family) differ in {', '.join(differ)}; "
          f"{visible} of those differences can be seen from behind")

# %% tags=["metrics"]
metrics = {"dataset": data.name, "train_images": len(data.train)}
for name, r in results.items():
    key = name.replace("colour, ", "colour_").replace(" ", "_")
    metrics[f"{key}_rank1"], metrics[f"{key}_mAP"] = float(r["cmc"][0]), r["mAP"]
print(json.dumps(metrics, indent=1))
