"""Grad-CAM, soft masks, profiles and the CASN losses: gradients, invariants, reference values."""

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch.autograd import gradcheck

from casn_lite.attention import (
    crop_and_resize,
    erase_attended,
    frozen_batchnorm_stats,
    grad_cam,
    horizontal_profile,
    indicator_vector,
    mass_share,
    normalize_per_image,
    soft_mask,
    upsample,
)
from casn_lite.losses import (
    CASNLoss,
    SiameseHead,
    attention_distance,
    attention_mining_loss,
    identification_attention,
    siamese_attention,
    siamese_attention_loss,
    siamese_bce_loss,
)
from casn_lite.models import build_model

D = dict(dtype=torch.float64)


def tiny_head(channels=3, classes=4, seed=0):
    """A small differentiable 'network head' from a conv map to class scores."""
    g = torch.Generator().manual_seed(seed)
    w1 = torch.randn(channels, channels, generator=g, **D)
    w2 = torch.randn(classes, channels, generator=g, **D)
    return lambda A: torch.tanh(A.mean(dim=(2, 3)) @ w1.T + (A**2).amax(dim=(2, 3))) @ w2.T


# --------------------------------------------------------------------------- gradcheck
def test_gradcheck_grad_cam_second_order():
    head = tiny_head()
    A = torch.rand(2, 3, 4, 3, **D, requires_grad=True)

    def cam(A):
        return grad_cam(head(A)[:, 1], A, create_graph=True)

    assert gradcheck(cam, (A,), eps=1e-6, atol=1e-5)


def test_first_order_grad_cam_treats_weights_as_constants():
    head = tiny_head()
    A = torch.rand(2, 3, 4, 3, **D, requires_grad=True)
    target = torch.rand(2, 1, 4, 3, **D)
    (grad_first,) = torch.autograd.grad(((grad_cam(head(A)[:, 0], A) - target) ** 2).sum(), A)
    # the same by hand: weights computed, detached, then the map rebuilt from A
    (g,) = torch.autograd.grad(head(A)[:, 0].sum(), A)
    weights = g.mean(dim=(2, 3), keepdim=True).detach()
    manual = normalize_per_image(F.relu((weights * A).sum(1, keepdim=True)))
    (grad_manual,) = torch.autograd.grad(((manual - target) ** 2).sum(), A)
    torch.testing.assert_close(grad_first, grad_manual)


@pytest.mark.parametrize("fn", [
    lambda m: normalize_per_image(m),
    lambda m: upsample(m, (7, 5)),
    lambda m: soft_mask(m, 0.5, 10.0),
    lambda m: horizontal_profile(m),
    lambda m: crop_and_resize(horizontal_profile(m), 0.2, 6),
    lambda m: crop_and_resize(horizontal_profile(m), None, 9),
], ids=["normalize", "upsample", "soft_mask", "profile", "crop_resize", "resize_uncropped"])
def test_gradcheck_map_functions(fn):
    maps = torch.rand(3, 1, 5, 4, **D, requires_grad=True)
    assert gradcheck(fn, (maps,), eps=1e-6, atol=1e-5)


def test_gradcheck_masked_image_and_losses():
    images = torch.randn(2, 3, 4, 4, **D, requires_grad=True)
    mask = torch.rand(2, 1, 4, 4, **D, requires_grad=True)
    assert gradcheck(erase_attended, (images, mask))
    logits = torch.randn(4, 5, **D, requires_grad=True)
    pids = torch.tensor([0, 3, 3, 1])
    for score in ("prob", "logit"):
        assert gradcheck(lambda z, s=score: attention_mining_loss(z, pids, s), (logits,))
    pair_logits = torch.randn(4, 2, **D, requires_grad=True)
    same = torch.tensor([1, 0, 1, 0])
    assert gradcheck(lambda z: siamese_bce_loss(z, same), (pair_logits,))
    p1 = torch.rand(4, 6, **D, requires_grad=True)
    p2 = torch.rand(4, 6, **D, requires_grad=True)

    def sa(p1, p2, z):
        return siamese_attention_loss(siamese_bce_loss(z, same), attention_distance(p1, p2), same,
                                      negative_margin=3.0)[0]

    assert gradcheck(sa, (p1, p2, pair_logits))


def test_gradcheck_siamese_head():
    head = SiameseHead(6, 5).double()
    diff = torch.randn(3, 6, **D, requires_grad=True)
    assert gradcheck(head, (diff,))


# --------------------------------------------------------------------------- invariants
def test_soft_mask_is_in_unit_interval():
    cam = normalize_per_image(torch.randn(4, 1, 8, 4) * 100)
    mask = soft_mask(upsample(cam, (16, 8)), 0.5, 10.0)
    assert mask.min() >= 0 and mask.max() <= 1
    assert cam.min() >= 0 and cam.max() <= 1


def test_all_zero_map_gives_no_nan():
    A = torch.zeros(2, 3, 4, 4, requires_grad=True)
    score = (A.sum(dim=(1, 2, 3)) * 0) + torch.tensor([1.0, 2.0])  # no gradient anywhere: M = 0
    cam = grad_cam(score, A, create_graph=True)
    assert torch.equal(cam, torch.zeros_like(cam))
    profile = horizontal_profile(upsample(cam, (8, 8)))
    cropped = crop_and_resize(profile, 0.2, 5)
    loss, _ = siamese_attention_loss(torch.tensor(0.0), attention_distance(cropped[:1], cropped[1:]),
                                     torch.tensor([1]))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(A.grad).all()


def test_attention_distance_has_a_finite_gradient_at_zero():
    p = torch.rand(2, 7, requires_grad=True)
    attention_distance(p, p.detach().clone()).sum().backward()
    assert torch.isfinite(p.grad).all()


def person_map(top: int, height: int = 24, width: int = 6) -> torch.Tensor:
    """An attention map with a 'person' (a ramp of rows) starting at row ``top``."""
    m = torch.zeros(1, 1, height, width)
    rows = torch.linspace(0.3, 1.0, 10)
    for i, v in enumerate(rows):
        if 0 <= top + i < height:
            m[0, 0, top + i, 1:5] = v
    return m


def consistency(map1, map2, threshold):
    p1 = crop_and_resize(horizontal_profile(map1), threshold, 16)
    p2 = crop_and_resize(horizontal_profile(map2), threshold, 16)
    return attention_distance(p1, p2).item()


def test_consistency_zero_for_identical_and_grows_with_vertical_shift():
    base = person_map(4)
    assert consistency(base, base.clone(), 0.2) == 0.0
    # without the crop, the distance grows as one map moves down
    uncropped = [consistency(base, person_map(4 + s), None) for s in range(0, 8)]
    assert uncropped[0] == 0 and all(b > a for a, b in zip(uncropped, uncropped[1:], strict=False))
    # the crop to the person's span undoes a shift that keeps the person in the frame ...
    assert consistency(base, person_map(10), 0.2) == pytest.approx(0.0, abs=1e-6)
    # ... but not one that pushes part of the person out of it: more cut, larger distance
    cut = [consistency(base, person_map(14 + s), 0.2) for s in range(1, 6)]
    assert cut[0] > 0 and all(b > a for a, b in zip(cut, cut[1:], strict=False))


def test_crop_and_resize_finds_the_span():
    profile = torch.tensor([[0.0, 0.0, 0.5, 1.0, 0.5, 0.0]])
    out = crop_and_resize(profile, 0.2, 3)
    torch.testing.assert_close(out, torch.tensor([[0.5, 1.0, 0.5]]))


def test_indicator_is_binary_in_both_modes():
    head = SiameseHead(8, 6)
    diff = torch.randn(5, 8, requires_grad=True)
    z = head(diff)
    for mode in ("margin", "same_logit", "difference"):
        alpha = indicator_vector(z, diff, mode)
        assert alpha.shape == diff.shape
        assert set(alpha.unique().tolist()) <= {0.0, 1.0}
    with pytest.raises(ValueError, match="indicator mode"):
        indicator_vector(z, diff, "sign")


def test_margin_indicator_follows_the_log_odds_of_same():
    head = SiameseHead(4, 3)
    with torch.no_grad():  # a linear head: d z_same / d f_minus is the weight row's product
        head.layers[0].weight.copy_(torch.eye(3, 4))
        head.layers[0].bias.fill_(10.0)  # every ReLU active
        # rows (z_diff, z_same): the margin's weights are [1, -1, 2] - [2, -2, 0] = [-1, 1, 2]
        head.layers[2].weight.copy_(torch.tensor([[2.0, -2.0, 0.0], [1.0, -1.0, 2.0]]))
    diff = torch.randn(2, 4, requires_grad=True)
    z = head(diff)
    torch.testing.assert_close(indicator_vector(z, diff), torch.tensor([[0.0, 1, 1, 0]] * 2))
    torch.testing.assert_close(indicator_vector(z, diff, "same_logit"), torch.tensor([[1.0, 0, 1, 0]] * 2))


def test_margin_indicator_ignores_what_cross_entropy_cannot_train():
    """Shifting both rows of the head's last layer by one vector (and both biases by one
    number) changes z_same + z_diff, which cross-entropy never trains, and nothing else:
    the margin's alpha stays, the z_same reading moves."""
    torch.manual_seed(0)
    head = SiameseHead(16, 32)
    diff = torch.randn(64, 16, requires_grad=True)
    before = indicator_vector(head(diff), diff)
    before_same = indicator_vector(head(diff), diff, "same_logit")
    with torch.no_grad():
        shift = 3 * torch.randn(32)
        head.layers[2].weight += shift  # the same vector added to both rows
        head.layers[2].bias += 1.5
    after = indicator_vector(head(diff), diff)
    assert torch.equal(before, after)
    assert not torch.equal(before_same, indicator_vector(head(diff), diff, "same_logit"))


# --------------------------------------------------------------------------- Grad-CAM reference
def reference_grad_cam(resnet, images, classes):
    """Grad-CAM as interpretability libraries compute it: hooks on the last conv block,
    backward of the class score, one image at a time."""
    maps = []
    for image, c in zip(images, classes, strict=True):
        saved = {}

        def keep(module, inputs, output, saved=saved):
            saved["A"] = output
            output.register_hook(lambda grad: saved.__setitem__("G", grad))

        handle = resnet.layer4.register_forward_hook(keep)
        resnet.zero_grad()
        resnet(image[None])[0, c].backward()
        handle.remove()
        weights = saved["G"].mean(dim=(2, 3), keepdim=True)
        cam = torch.relu((weights * saved["A"]).sum(1, keepdim=True))
        cam = cam - cam.min()
        maps.append(cam / (cam.max() + 1e-7))  # pytorch-grad-cam's scaling
    return torch.cat(maps).detach()


def test_grad_cam_matches_hook_based_reference_on_torchvision_resnet():
    torch.manual_seed(0)
    resnet = torchvision.models.resnet18(weights=None, num_classes=10).eval()
    images = torch.randn(3, 3, 160, 96)  # a 5 x 3 conv5 map
    with torch.no_grad():
        classes = resnet(images).argmax(1)  # the predicted class, as Grad-CAM is usually shown
    expected = reference_grad_cam(resnet, images, classes)
    assert (expected.flatten(1).amax(1) > 0.99).all(), "a non-trivial map for every image"
    trunk = torch.nn.Sequential(*list(resnet.children())[:-2])
    A = trunk(images)
    logits = resnet.fc(torch.flatten(resnet.avgpool(A), 1))
    ours = grad_cam(logits.gather(1, classes[:, None]).squeeze(1), A)
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=1e-4)


# --------------------------------------------------------------------------- on the IDE model
@pytest.fixture
def small_model():
    torch.manual_seed(0)
    return build_model("ide", "resnet18", num_classes=5, embed_dim=16)


def test_second_order_reaches_the_head_through_the_channel_weights(small_model):
    images = torch.randn(2, 3, 64, 32)
    pids = torch.tensor([0, 3])
    trunk, head = {}, {}
    for second_order in (False, True):
        small_model.zero_grad()
        ia = identification_attention(small_model.train(), images, pids, second_order=second_order,
                                      gradient="attention")  # the mask path alone
        attention_mining_loss(ia.masked_logits, pids).backward()
        trunk[second_order] = small_model.trunk[4][0].conv1.weight.grad.clone()  # layer1
        grad = small_model.embed[0].weight.grad
        head[second_order] = torch.zeros(()) if grad is None else grad.abs().sum()
    assert trunk[False].abs().sum() > 0
    # the per-image head after A is piecewise linear (pool, linear, BN in evaluation mode, ReLU,
    # linear): d s_c / d A does not depend on A, so the second-order path adds gradient to
    # the head's weights, through w_k, and nothing to the trunk's
    torch.testing.assert_close(trunk[False], trunk[True])
    assert head[False] == 0 and head[True] > 0, "the second-order path reaches the head's weights"


def test_masked_pass_leaves_batchnorm_running_stats_alone(small_model):
    bn = small_model.trunk[1]
    small_model.train()
    before = bn.running_mean.clone()
    with frozen_batchnorm_stats(small_model):
        small_model(torch.randn(2, 3, 64, 32))
    torch.testing.assert_close(bn.running_mean, before)
    assert bn.momentum == 0.1
    small_model(torch.randn(2, 3, 64, 32))
    assert not torch.allclose(bn.running_mean, before)


def test_siamese_attention_shapes(small_model):
    head = SiameseHead(16, 8)
    x1, x2 = torch.randn(3, 3, 64, 32), torch.randn(3, 3, 64, 32)
    sa = siamese_attention(small_model.train(), head, x1, x2, length=12)
    assert sa.pair_logits.shape == (3, 2) and sa.indicator.shape == (3, 16)
    assert sa.attention1.shape == (3, 1, 4, 2) and sa.profile1.shape == (3, 64)
    assert sa.cropped1.shape == sa.cropped2.shape == (3, 12)


def test_identical_pair_has_zero_consistency_term(small_model):
    head = SiameseHead(16, 8)
    x = torch.randn(2, 3, 64, 32)
    sa = siamese_attention(small_model.eval(), head, x, x.clone())
    torch.testing.assert_close(attention_distance(sa.cropped1, sa.cropped2), torch.zeros(2))


def batch(n_pairs=2):
    torch.manual_seed(1)
    return {"image": torch.randn(4, 3, 64, 32), "pid": torch.tensor([0, 0, 1, 1]),
            "image1": torch.randn(n_pairs, 3, 64, 32), "image2": torch.randn(n_pairs, 3, 64, 32),
            "same": torch.tensor([1, 0][:n_pairs])}


@pytest.mark.parametrize("ia,sa,variant,keys", [
    (False, False, "IDE", {"ide"}),
    (True, False, "IDE+IA", {"ide", "ia", "ia_empty"}),
    (False, True, "IDE+SA", {"ide", "sa", "bce", "consistency", "sa_empty"}),
    (True, True, "CASN(IDE)", {"ide", "ia", "ia_empty", "sa", "bce", "consistency", "sa_empty"}),
])
def test_casn_loss_flags(small_model, ia, sa, variant, keys):
    loss_fn = CASNLoss(ia=ia, sa=sa, feature_dim=16, hidden_dim=8)
    assert loss_fn.variant == variant
    loss, terms = loss_fn(small_model.train(), batch(), torch.device("cpu"))
    assert set(terms) == keys
    expected = terms["ide"] + terms.get("ia", 0.0) + terms.get("sa", 0.0)
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    loss.backward()
    assert small_model.trunk[0].weight.grad is not None
    if sa:
        assert loss_fn.head.layers[0].weight.grad is not None


def test_casn_loss_ide_only_equals_cross_entropy(small_model):
    b = batch()
    torch.manual_seed(3)
    loss, _ = CASNLoss(ia=False, sa=False)(small_model.eval(), b, torch.device("cpu"))
    expected = F.cross_entropy(small_model(b["image"]).logits, b["pid"])
    torch.testing.assert_close(loss, expected)


def test_casn_loss_asks_for_pairs_when_sa_is_on(small_model):
    b = {k: v for k, v in batch().items() if k in ("image", "pid")}
    with pytest.raises(KeyError, match="JointLoader"):
        CASNLoss(ia=False, sa=True, feature_dim=16)(small_model, b, torch.device("cpu"))


def test_mass_share_on_hand_made_maps():
    attention = torch.zeros(3, 1, 4, 4)
    attention[0, 0, :2] = 1.0  # all mass in the top half
    attention[1, 0] = 1.0  # uniform
    region = torch.zeros(3, 4, 4, dtype=torch.bool)
    region[:, :2] = True  # the top half
    share = mass_share(attention, region)
    torch.testing.assert_close(share[:2], torch.tensor([1.0, 0.5]))
    assert share[2].isnan(), "an empty map attends nowhere"
    attention[2, 0, 3, 3] = 2.0
    attention[2, 0, 0, 0] = 6.0
    assert mass_share(attention, region)[2].item() == pytest.approx(0.75)
