"""Figures: images by camera, training curves, CMC curves, ranked galleries, attention.

Conventions every figure follows: attention maps share one fixed [0, 1] scale in a
perceptually uniform colour map with a colour bar, so an empty map reads as empty; a true
match is framed solid and ticked, a wrong one dashed and crossed (not only green and red);
legends sit beside the axes, never on the data; photo-like grids can be shown as JPEG
(``jpeg``), which is several times lighter than PNG in a committed notebook.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter
from PIL import Image

from .attention import crop_and_resize, horizontal_profile, profile_span, upsample
from .data.datasets import ReIDData, Sample, read_image
from .data.transforms import denormalize

__all__ = ["jpeg", "identity_across_cameras", "image_and_mask", "sample_grid", "plot_history", "plot_cmc",
           "plot_step_breakdown",
           "plot_ranked", "show_pairs", "show_attention", "show_masking", "show_indicator",
           "show_profile_steps", "plot_ablation", "plot_findings"]

# a true match: blue, solid frame, a tick; a wrong one: orange, dashed frame, a cross
# (colour-blind safe, and readable in grey)
MATCH = {True: {"color": (0.0, 0.45, 0.70), "linestyle": "-", "mark": "\u2713"},
         False: {"color": (0.90, 0.55, 0.0), "linestyle": "--", "mark": "\u2717"}}
ATTENTION_CMAP = "inferno"  # perceptually uniform: black is no attention, yellow the most
MASK_CLASSES = ("background", "person", "identity cue")  # SynthPeople mask values 0, 1, 2


def jpeg(fig, quality: int = 80):
    """Show ``fig`` as a JPEG image and close it: photo-like grids weigh several times less
    than as PNG in a saved notebook. Returns an ``IPython.display.Image`` (displayed when
    it is a cell's last expression)."""
    from IPython.display import Image as DisplayImage

    buffer = io.BytesIO()
    fig.savefig(buffer, format="jpeg", dpi=fig.dpi, pil_kwargs={"quality": quality, "optimize": True})
    plt.close(fig)
    return DisplayImage(data=buffer.getvalue(), format="jpeg")


def _legend_outside(ax, **kwargs) -> None:
    """A legend to the right of the axes, where it cannot cover data."""
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, fontsize=8, **kwargs)


def _frame(ax, match: bool | None) -> None:
    """A frame around a picture: None for a neutral (query) frame, else MATCH's style."""
    for spine in ax.spines.values():
        spine.set_visible(True)
        if match is None:
            spine.set_edgecolor((0.2, 0.2, 0.2))
            spine.set_linewidth(2)
        else:
            spine.set_edgecolor(MATCH[match]["color"])
            spine.set_linestyle(MATCH[match]["linestyle"])
            spine.set_linewidth(3)


def _attention_colorbar(fig, axes) -> None:
    """One colour bar for every attention overlay of a figure: the fixed [0, 1] scale."""
    mappable = ScalarMappable(Normalize(0, 1), ATTENTION_CMAP)
    fig.colorbar(mappable, ax=np.ravel(axes).tolist(), fraction=0.03, pad=0.02,
                 label="attention")


def _show(ax, image: Image.Image | np.ndarray, title: str = "", **imshow) -> None:
    """One picture on an axis, without ticks or frame."""
    ax.imshow(image, **imshow)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=8)
    for spine in ax.spines.values():
        spine.set_visible(False)


def identity_across_cameras(samples: Sequence[Sample], pid: int, per_camera: int = 2, name: int | None = None):
    """Every camera's view of one identity: one column per camera. ``name``: the person's
    number as the data set writes it (file names), when ``pid`` is a training label."""
    by_cam: dict[int, list[Sample]] = {}
    for s in samples:
        if s.pid == pid:
            by_cam.setdefault(s.camid, []).append(s)
    cams = sorted(by_cam)
    fig, axes = plt.subplots(per_camera, len(cams), figsize=(1.3 * len(cams), 2.5 * per_camera), squeeze=False)
    for col, cam in enumerate(cams):
        for row in range(per_camera):
            ax = axes[row, col]
            if row < len(by_cam[cam]):
                _show(ax, read_image(by_cam[cam][row].path), f"camera {cam + 1}" if row == 0 else "")
            else:
                ax.axis("off")
    fig.suptitle(f"person {pid if name is None else name} seen by {len(cams)} cameras")
    fig.tight_layout()
    return fig


def image_and_mask(data: ReIDData, samples: Sequence[Sample]):
    """Each image beside its SynthPeople mask, with a legend for the mask's three classes."""
    cmap = plt.get_cmap("viridis", len(MASK_CLASSES))
    fig, axes = plt.subplots(1, 2 * len(samples), figsize=(1.3 * 2 * len(samples) + 1.6, 3), squeeze=False)
    for k, sample in enumerate(samples):
        _show(axes[0, 2 * k], read_image(sample.path), f"person {sample.pid}")
        _show(axes[0, 2 * k + 1], np.asarray(Image.open(data.mask_path(sample))), "its mask",
              cmap=cmap, vmin=-0.5, vmax=len(MASK_CLASSES) - 0.5, interpolation="nearest")
    handles = [Patch(color=cmap(v), label=f"{v}: {name}") for v, name in enumerate(MASK_CLASSES)]
    _legend_outside(axes[0, -1], handles=handles, title="mask value")
    fig.tight_layout()
    return fig


def sample_grid(data: ReIDData, num_ids: int = 6, split: str = "train", seed: int = 0):
    """Rows: identities; columns: cameras (an empty cell where a camera never saw that person)."""
    samples = getattr(data, split)
    rng = np.random.default_rng(seed)
    pids = rng.choice(sorted({s.pid for s in samples if s.pid > 0 or split == "train"}), num_ids, replace=False)
    cams = data.num_cameras
    fig, axes = plt.subplots(num_ids, cams, figsize=(1.1 * cams, 2.1 * num_ids), squeeze=False)
    for r, pid in enumerate(pids):
        for c in range(cams):
            shots = [s for s in samples if s.pid == pid and s.camid == c]
            ax = axes[r, c]
            if shots:
                _show(ax, read_image(shots[0].path), f"cam {c + 1}" if r == 0 else "")
            else:
                ax.axis("off")
        axes[r, 0].set_ylabel(f"person {pid}", fontsize=8)
    fig.tight_layout()
    return fig


def _readable_log_ticks(axis) -> None:
    """Labels at 1, 2 and 5 of every decade, written as plain numbers (0.05, 0.2, 1, 2): a
    loss that spans less than a decade still gets labelled ticks."""
    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axis.set_minor_formatter(NullFormatter())


def plot_history(history: list[dict], losses: Sequence[str] = ("loss",),
                 metrics: Sequence[str] = ("rank1", "mAP")):
    """Loss terms (left, log scale: a term 100 x smaller than L_ide still shows its shape)
    and retrieval metrics in % (right) per epoch."""
    epochs = [h["epoch"] for h in history]
    shown = [m for m in metrics if m in history[0]]
    fig, axes = plt.subplots(1, 2 if shown else 1, figsize=(10 if shown else 5.5, 3), squeeze=False)
    ax = axes[0, 0]
    for k in losses:
        values = np.array([h.get(k, np.nan) for h in history], dtype=float)
        ax.plot(epochs, np.where(values > 0, values, np.nan), marker="o", label=k)  # log: zeros left out
    ax.set(xlabel="epoch", ylabel="loss (log scale)", title="training loss", yscale="log")
    _readable_log_ticks(ax.yaxis)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3, which="both")
    _legend_outside(ax)
    if shown:
        ax = axes[0, 1]
        for m in shown:
            ax.plot(epochs, [100 * h[m] for h in history], marker="o", label=m)
        ax.set(xlabel="epoch", ylabel="%", title="test retrieval")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        _legend_outside(ax)
    fig.tight_layout()
    return fig


def plot_step_breakdown(seconds: dict[str, dict[str, float]]):
    """One bar per variant: the milliseconds of a training step, split into its parts
    (``benchmarks/step_breakdown.py``'s ``seconds_per_step``)."""
    variants = list(seconds)
    parts = [p for p in next(iter(seconds.values())) if any(seconds[v][p] > 0 for v in variants)]
    fig, ax = plt.subplots(figsize=(10, 0.6 * len(variants) + 1.6))
    left = np.zeros(len(variants))
    colors = plt.get_cmap("tab20")(np.linspace(0, 1, len(parts)))
    for part, color in zip(parts, colors, strict=True):
        widths = np.array([1000 * seconds[v][part] for v in variants])
        ax.barh(variants, widths, left=left, color=color, label=part)
        left += widths
    ax.invert_yaxis()  # the paper's order, top to bottom
    ax.set(xlabel="milliseconds per training step", title="where a step's time goes")
    ax.grid(alpha=0.3, axis="x")
    _legend_outside(ax, ncol=1)
    fig.tight_layout()
    return fig


def plot_cmc(curves: dict[str, np.ndarray], max_rank: int = 20):
    """Cumulative matching characteristic: share of queries matched within the top k."""
    fig, ax = plt.subplots(figsize=(6, 3))
    for name, cmc in curves.items():
        k = min(max_rank, len(cmc))
        ax.plot(np.arange(1, k + 1), 100 * np.asarray(cmc[:k]), marker=".", label=name)
    ax.set(xlabel="rank k", ylabel="matched within top k (%)", title="CMC", ylim=(0, 101))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    _legend_outside(ax)
    fig.tight_layout()
    return fig


def plot_ranked(query: Sequence[Sample], gallery: Sequence[Sample], distmat: np.ndarray | torch.Tensor,
                query_indices: Sequence[int], topk: int = 8):
    """For each chosen query: the query, then its top-k gallery images, a true match framed
    solid and ticked, a wrong one dashed and crossed (see ``MATCH``). Gallery images of the
    query's person from its own camera are skipped, as the evaluation protocol ignores them."""
    dist = torch.as_tensor(distmat)
    fig, axes = plt.subplots(len(query_indices), topk + 1, figsize=(1.0 * (topk + 1), 2.1 * len(query_indices)),
                             squeeze=False)
    for row, qi in enumerate(query_indices):
        q = query[qi]
        _show(axes[row, 0], read_image(q.path), f"query\nperson {q.pid}, cam {q.camid + 1}")
        _frame(axes[row, 0], None)
        shown = 0
        for gi in torch.argsort(dist[qi]).tolist():
            g = gallery[gi]
            if g.pid == q.pid and g.camid == q.camid:
                continue
            shown += 1
            same = g.pid == q.pid
            _show(axes[row, shown], read_image(g.path), f"#{shown} {MATCH[same]['mark']}\nperson {g.pid}")
            _frame(axes[row, shown], same)
            if shown == topk:
                break
    fig.legend(handles=_match_handles("true match", "wrong match"), loc="lower center", ncol=2, fontsize=8,
               frameon=False)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return fig


def _match_handles(true_label: str, false_label: str) -> list:
    """Legend entries for MATCH's two frame styles."""
    return [Line2D([], [], color=MATCH[m]["color"], linestyle=MATCH[m]["linestyle"], linewidth=3,
                   label=f"{MATCH[m]['mark']} {label}") for m, label in ((True, true_label), (False, false_label))]


# --------------------------------------------------------------------------- attention
def _picture(image: torch.Tensor) -> np.ndarray:
    """A normalised [3, H, W] image tensor as an H x W x 3 array in [0, 1]."""
    return denormalize(image.detach().cpu().float()).permute(1, 2, 0).numpy()


def _at_size(attention: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """A [1, h, w] (or [h, w]) map upsampled to ``size`` as an array."""
    m = attention.detach().cpu().float().reshape(1, 1, *attention.shape[-2:])
    return upsample(m, size)[0, 0].numpy()


def _overlay(ax, image: torch.Tensor, attention: torch.Tensor, title: str = "") -> None:
    """The image with its attention map on top: the fixed [0, 1] scale of ATTENTION_CMAP,
    half transparent, so an empty map darkens the whole picture evenly."""
    _show(ax, _picture(image), title)
    ax.imshow(_at_size(attention, image.shape[-2:]), cmap=ATTENTION_CMAP, alpha=0.55, vmin=0, vmax=1)


def show_pairs(images1: torch.Tensor, images2: torch.Tensor, same: Sequence[int],
               maps1: torch.Tensor | None = None, maps2: torch.Tensor | None = None):
    """Image pairs side by side, a same-person pair framed solid and ticked, a
    different-person pair dashed and crossed; attention on top if given, with its colour bar."""
    n = len(images1)
    with_maps = maps1 is not None
    fig, axes = plt.subplots(1, 2 * n, figsize=(1.05 * 2 * n + (0.8 if with_maps else 0), 2.6), squeeze=False,
                             layout="constrained")
    for i in range(n):
        for k, (imgs, maps) in enumerate(((images1, maps1), (images2, maps2))):
            ax = axes[0, 2 * i + k]
            if maps is None:
                _show(ax, _picture(imgs[i]))
            else:
                _overlay(ax, imgs[i], maps[i])
            _frame(ax, bool(same[i]))
        mark = MATCH[bool(same[i])]["mark"]
        axes[0, 2 * i].set_title(f"pair {i + 1}: {mark} {'same' if same[i] else 'different'}", fontsize=8, loc="left")
    if with_maps:
        _attention_colorbar(fig, axes)
    return fig


def show_attention(images: torch.Tensor, maps: dict[str, torch.Tensor],
                   labels: Sequence[str] | None = None):
    """One column per image: the image, then each named attention map over it (rows)."""
    n = len(images)
    fig, axes = plt.subplots(1 + len(maps), n, figsize=(1.05 * n + 0.8, 2.1 * (1 + len(maps))), squeeze=False,
                             layout="constrained")
    for i in range(n):
        _show(axes[0, i], _picture(images[i]), labels[i] if labels else "")
        for r, (name, m) in enumerate(maps.items(), start=1):
            _overlay(axes[r, i], images[i], m[i])
            if i == 0:
                axes[r, 0].set_ylabel(name, fontsize=8)
    axes[0, 0].set_ylabel("image", fontsize=8)
    _attention_colorbar(fig, axes[1:])
    return fig


def show_masking(images: torch.Tensor, attention: torch.Tensor, mask: torch.Tensor,
                 masked: torch.Tensor, p_image: Sequence[float] | None = None,
                 p_masked: Sequence[float] | None = None):
    """Identification attention step by step, one row per image: I, M, T(M), I* = I - T(M) I.
    ``p_image`` and ``p_masked`` (optional) label I and I* with the true class's probability."""
    n = len(images)
    fig, axes = plt.subplots(n, 4, figsize=(6.0, 2.2 * n), squeeze=False, layout="constrained")
    titles = ["image I", "Grad-CAM M", "soft mask T(M)", "masked I*"]
    for i in range(n):
        _show(axes[i, 0], _picture(images[i]), titles[0] if i == 0 else "")
        _overlay(axes[i, 1], images[i], attention[i], titles[1] if i == 0 else "")
        _show(axes[i, 2], mask[i, 0].detach().cpu().numpy(), titles[2] if i == 0 else "",
              cmap=ATTENTION_CMAP, vmin=0, vmax=1)
        _show(axes[i, 3], _picture(masked[i]), titles[3] if i == 0 else "")
        if p_image is not None:
            axes[i, 0].set_xlabel(f"p(true id) {p_image[i]:.2f}", fontsize=7)
        if p_masked is not None:
            axes[i, 3].set_xlabel(f"p(true id) {p_masked[i]:.2f}", fontsize=7)
    _attention_colorbar(fig, axes[:, 1:3])  # M and T(M) share the [0, 1] scale
    return fig


def show_indicator(indicators: dict[str, torch.Tensor], max_dims: int = 128):
    """Indicator vectors alpha as pictures: one row per pair, one column per feature dimension
    (white = 1: this dimension makes the pair look like the same person). Only the first
    ``max_dims`` dimensions are drawn; the share of ones is over all of them. Given two
    readings, a third panel shows where they agree (white) and differ (black)."""
    panels = dict(indicators)
    if len(indicators) == 2:
        first, second = (v.detach().cpu().float() for v in indicators.values())
        panels["where the two agree (white) or differ (black)"] = (first == second).float()
    fig, axes = plt.subplots(len(panels), 1, figsize=(8, 1.3 * len(panels) + 0.5), squeeze=False)
    for ax, (name, alpha) in zip(axes[:, 0], panels.items(), strict=True):
        full = alpha.detach().cpu().float()
        shown = min(max_dims, full.shape[1])
        ax.imshow(full[:, :shown].numpy(), cmap="gray", vmin=0, vmax=1, aspect="auto", interpolation="nearest",
                  extent=(0.5, shown + 0.5, full.shape[0] + 0.5, 0.5))
        ax.set(ylabel="pair", title=f"{name}: {100 * full.mean():.0f} % ones (all {full.shape[1]} dimensions)",
               xlabel=f"feature dimension (the first {shown} of {full.shape[1]})")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout()
    return fig


def show_profile_steps(image1: torch.Tensor, image2: torch.Tensor, attention1: torch.Tensor,
                       attention2: torch.Tensor, threshold: float = 0.2, length: int = 32,
                       title: str = ""):
    """The paper's Fig. 5 for one pair: attention on each image, its horizontal max profile
    M_m with the threshold and the kept span, and the two spans resized to one length M*_m."""
    size = image1.shape[-2:]
    fig, axes = plt.subplots(1, 5, figsize=(11, 3.4), gridspec_kw={"width_ratios": [1, 1.3, 1, 1.3, 2]},
                             layout="constrained")
    resized = []
    for k, (image, att) in enumerate(((image1, attention1), (image2, attention2))):
        full = upsample(att.detach().cpu().float().reshape(1, 1, *att.shape[-2:]), size)
        profile = horizontal_profile(full)  # [1, H]
        first, last = (int(v) for v in profile_span(profile, threshold))
        resized.append(crop_and_resize(profile, threshold, length)[0].numpy())
        _overlay(axes[2 * k], image, att, f"image {k + 1}")
        ax = axes[2 * k + 1]
        rows = np.arange(profile.shape[1])
        ax.plot(profile[0].numpy(), rows, color="k")
        ax.axvline(threshold * float(profile.max()), color="tab:red", ls="--", lw=1, label="threshold")
        ax.axhspan(first, last, color="tab:orange", alpha=0.25, label="kept span")
        ax.set(ylim=(rows[-1], 0), xlim=(0, 1.05), xlabel="max over the row", ylabel="row",
               title=f"profile $M_m^{k + 1}$")
    ax = axes[4]
    for k, r in enumerate(resized):
        ax.plot(np.arange(length), r, marker=".", label=f"$M^*_{{m{k + 1}}}$")
    distance = float(np.linalg.norm(resized[0] - resized[1]))
    ax.set(xlabel=f"position along the span (resized to {length})", ylim=(0, 1.05),
           title=f"cropped and resized: $\\|M^*_{{m1}} - M^*_{{m2}}\\|_2$ = {distance:.2f}")
    _legend_outside(ax)
    fig.legend(handles=[Line2D([], [], color="tab:red", ls="--", lw=1, label="threshold"),
                        Patch(color="tab:orange", alpha=0.25, label="kept span")],
               loc="outside lower left", ncol=2, fontsize=7, frameon=False)
    _attention_colorbar(fig, axes[[0, 2]])
    if title:
        fig.suptitle(title)
    return fig


def plot_ablation(summary: dict, metrics: Sequence[str] = ("rank1", "mAP"),
                  paper: dict | None = None, paper_dataset: str = "Market-1501"):
    """Bars of each variant's mean for each metric, with error bars of one standard deviation
    over the seeds when there are two or more (none with one seed: no spread was measured);
    with ``paper`` (variant -> dataset -> (rank-1, mAP)), a second panel with the paper's
    numbers on real data, drawn apart so the two are never read as one scale."""
    variants = list(summary)
    x = np.arange(len(variants))
    width = 0.8 / len(metrics)
    panels = 2 if paper else 1
    fig, axes = plt.subplots(1, panels, figsize=(5.5 * panels, 3.4), squeeze=False)
    ax = axes[0, 0]
    seeds = min(summary[v][metrics[0]][2] for v in variants)
    for k, metric in enumerate(metrics):
        means = [100 * summary[v][metric][0] for v in variants]
        stds = [100 * summary[v][metric][1] for v in variants] if seeds > 1 else None
        ax.bar(x + k * width, means, width, yerr=stds, capsize=3, label=metric.replace("rank", "rank-"))
    spread = f"mean ± s.d. over {seeds} seeds" if seeds > 1 else "1 seed: no error bars"
    ax.set(xticks=x + width * (len(metrics) - 1) / 2, ylabel="%", title=f"ours: SynthPeople ({spread})")
    ax.set_xticklabels(variants, fontsize=8)
    _legend_outside(ax)
    if paper:
        ax = axes[0, 1]
        shown = [v for v in variants if paper_dataset in paper.get(v, {})]
        for k, label in enumerate(("rank-1", "mAP")):
            ax.bar(np.arange(len(shown)) + k * 0.4, [paper[v][paper_dataset][k] for v in shown], 0.4, label=label)
        ax.set(xticks=np.arange(len(shown)) + 0.2, ylabel="%", title=f"paper: {paper_dataset} (real data)")
        ax.set_xticklabels(shown, fontsize=8)
        _legend_outside(ax)
    fig.tight_layout()
    return fig


def plot_findings(rows: Sequence[dict]):
    """A forest plot of ``casn_lite.tooling.study.findings`` rows: each paired difference with
    its 95 % t interval over seeds, beside a dotted line at zero (no change). mAP, in points,
    on the left; each term's own attention quantity on the right (another scale). A
    pre-registered primary comparison is a filled marker, a secondary one hollow; an effect
    after the adjustment is blue, the rest grey. Rows without an interval (an absolute value
    such as the Siamese head's AUC) are left out."""
    tested = [r for r in rows if not r["verdict"].startswith("absolute") and r["low"] == r["low"]]
    panels = (("mAP", "paired difference in mAP (points)", 100),
              ("attention", "paired difference in the term's attention quantity", 1))
    groups = [[r for r in tested if (r["quantity"] == "mAP") == (name == "mAP")] for name, _, _ in panels]
    height = 0.32 * max(len(g) for g in groups) + 1.3
    fig, axes = plt.subplots(1, 2, figsize=(12, height), squeeze=False)
    for ax, (name, xlabel, scale), shown in zip(axes[0], panels, groups, strict=True):
        y = np.arange(len(shown))[::-1]
        for yi, r in zip(y, shown, strict=True):
            colour = MATCH[True]["color"] if r["verdict"].startswith("moved") else (0.45, 0.45, 0.45)
            d, low, high = (scale * r[k] for k in ("difference", "low", "high"))
            ax.errorbar(d, yi, xerr=[[d - low], [high - d]], fmt="o", color=colour, capsize=3,
                        markerfacecolor=colour if r.get("primary") else "white")
        ax.axvline(0, color="black", linewidth=0.8, linestyle=":")
        term = [r["term"].split(" (")[0] for r in shown]
        labels = [f"{t}, {r['data']}" if name == "mAP" else f"{t}: {r['quantity']}, {r['data']}"
                  for t, r in zip(term, shown, strict=True)]
        ax.set_yticks(y)
        ax.set_yticklabels(labels, fontsize=8)
        ax.set_xlabel(xlabel)
    handles = [Line2D([], [], marker="o", linestyle="", color="grey", markerfacecolor="grey", label="primary (Holm)"),
               Line2D([], [], marker="o", linestyle="", color="grey", markerfacecolor="white",
                      label="secondary (Benjamini-Hochberg)"),
               Line2D([], [], marker="o", linestyle="", color=MATCH[True]["color"], label="an effect after adjusting"),
               Line2D([], [], marker="o", linestyle="", color=(0.45, 0.45, 0.45), label="no effect shown")]
    _legend_outside(axes[0, 1], handles=handles)
    fig.tight_layout()
    return fig
