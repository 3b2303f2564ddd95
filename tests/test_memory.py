"""In-memory uint8 banks augmented by tensor operations: the same batches as the DataLoaders."""

import torch

from casn_lite.data import load_dataset, pair_loader, reid_loaders
from casn_lite.data.memory import DeviceAugment, InMemoryLoader, decode_all


def generator(seed=0):
    return torch.Generator().manual_seed(seed)


def test_flip_pad_crop_and_erase():
    images = torch.randint(0, 256, (6, 3, 8, 4), dtype=torch.uint8)
    plain = DeviceAugment(8, 4, flip_p=0, pad=0, erase_p=0)
    torch.testing.assert_close(plain(images, generator()), plain.normalize(images))
    flipped = DeviceAugment(8, 4, flip_p=1, pad=0, erase_p=0)(images, generator())
    torch.testing.assert_close(flipped, plain.normalize(images.flip(-1)))
    cropped = DeviceAugment(8, 4, flip_p=0, pad=2, erase_p=0)(images, generator())
    padded = plain.normalize(torch.nn.functional.pad(images, (2, 2, 2, 2)))
    for b in range(6):  # each image is some 8 x 4 window of its padded self
        assert any(torch.equal(cropped[b], padded[b, :, y:y + 8, x:x + 4]) for y in range(5) for x in range(5))
    erased = DeviceAugment(8, 4, flip_p=0, pad=0, erase_p=1)(images + 1, generator())  # no pixel is 0 before
    zeros = (erased == 0).all(dim=1).float().mean(dim=(1, 2))
    assert ((zeros > 0) & (zeros <= 0.5)).all()


def test_batches_match_the_dataloader_path(tiny_synth):
    data = load_dataset("synthpeople", tiny_synth[0])
    disk = reid_loaders(data, 64, 32, 8, 2, seed=3, in_memory=False)
    memory = reid_loaders(data, 64, 32, 8, 2, seed=3, in_memory=True, device="cpu")
    assert isinstance(memory.train, InMemoryLoader) and len(memory.train) == len(disk.train)
    assert [b["pid"].tolist() for b in memory.train] == [b["pid"].tolist() for b in disk.train]
    for a, b in zip(memory.query, disk.query, strict=True):  # evaluation: every image, same pixels
        assert torch.equal(a["pid"], b["pid"])
        torch.testing.assert_close(a["image"], b["image"], atol=2 / 255 / 0.225, rtol=0)
    assert sum(len(b["pid"]) for b in memory.gallery) == len(data.gallery)
    # pairs cut from the decoded images: the same pairs as read from disk, augmented on the device
    on_device = list(pair_loader(data, 64, 32, 4, 3, seed=0, images=memory.train_images))
    from_disk = list(pair_loader(data, 64, 32, 4, 3, seed=0))
    assert len(on_device) == len(from_disk) == 3 and on_device[0]["image1"].shape == (4, 3, 64, 32)
    for a, b in zip(on_device, from_disk, strict=True):
        assert all(torch.equal(a[k], b[k]) for k in ("pid1", "pid2", "same"))


def test_augmentation_is_seeded_per_epoch(tiny_synth):
    data = load_dataset("synthpeople", tiny_synth[0])
    loader = reid_loaders(data, 64, 32, 8, 2, seed=0, in_memory=True, device="cpu").train

    def first(epoch):
        loader.set_epoch(epoch)
        return next(iter(loader))["image"]

    assert torch.equal(first(1), first(1))
    assert not torch.equal(first(1), first(2))


def test_decode_all_shape(tiny_synth):
    data = load_dataset("synthpeople", tiny_synth[0])
    bank = decode_all(data.query[:3], 64, 32, progress=False)
    assert bank.shape == (3, 3, 64, 32) and bank.dtype == torch.uint8
