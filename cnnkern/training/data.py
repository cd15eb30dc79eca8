"""Training data: a learnable synthetic image set (the default) or an ImageFolder, and a resumable loader.

The synthetic set is a pure function of (seed, index): every rank, every worker and a resumed run see the
same images without any stored data, and a run is reproducible from its seed alone.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

# ImageNet statistics; ImageFolder images are normalized with them (what the torchvision weights expect).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class SyntheticImages(Dataset):
    """``size`` images of ``num_classes`` classes: a smooth class pattern (low-frequency spatial template
    plus a per-class colour) under Gaussian noise. The label is ``index % num_classes`` (balanced classes);
    the noise of image i is drawn from a generator seeded by (seed, i). A conv net learns it in a few dozen
    steps, yet the noise keeps single images ambiguous enough that the loss does not drop to 0 at once."""

    def __init__(self, size: int, num_classes: int, image_size: int, seed: int = 0, noise: float = 1.0):
        if size < 1 or num_classes < 2 or image_size < 1:
            raise ValueError(f"SyntheticImages: need size >= 1, num_classes >= 2, image_size >= 1; got "
                             f"size={size}, num_classes={num_classes}, image_size={image_size}")
        self.size, self.num_classes, self.image_size = size, num_classes, image_size
        self.seed, self.noise = seed, noise
        g = torch.Generator().manual_seed(seed)
        coarse = torch.randn(num_classes, 3, 4, 4, generator=g)
        pattern = F.interpolate(coarse, size=(image_size, image_size), mode="bilinear", align_corners=False)
        pattern = pattern / pattern.flatten(1).std(dim=1).clamp_min(1e-6).view(-1, 1, 1, 1)
        colour = torch.randn(num_classes, 3, 1, 1, generator=g)
        self.templates = (pattern + colour).contiguous()

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if not 0 <= index < self.size:
            raise IndexError(f"index {index} out of range for a synthetic set of {self.size} images")
        label = index % self.num_classes
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + index + 1)
        noise = torch.randn(self.templates.shape[1:], generator=g)
        return self.templates[label] + self.noise * noise, label


def image_folder(path: str, image_size: int, train: bool = True) -> Dataset:
    """torchvision's ImageFolder with the usual ImageNet transforms (random resized crop + flip for
    training). torchvision is imported here only: the synthetic default does not need it."""
    try:
        from torchvision import datasets, transforms
    except ImportError as e:
        raise RuntimeError(f"--data needs torchvision (pip install torchvision), which cannot be imported: "
                           f"{e}. Leave out --data to train on synthetic data.") from e
    if not os.path.isdir(path):
        raise FileNotFoundError(f"--data {path!r} is not a directory (expected an ImageFolder: one "
                                "sub-directory of images per class)")
    norm = transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)
    if train:
        tf = transforms.Compose([transforms.RandomResizedCrop(image_size), transforms.RandomHorizontalFlip(),
                                 transforms.ToTensor(), norm])
    else:
        tf = transforms.Compose([transforms.Resize(int(image_size * 8 / 7)), transforms.CenterCrop(image_size),
                                 transforms.ToTensor(), norm])
    return datasets.ImageFolder(path, transform=tf)


class _SkipSampler(Sampler[int]):
    """The indices of ``base`` from position ``skip`` on: a run resumed mid-epoch continues with exactly
    the samples the uninterrupted run would have seen next, without loading the ones before."""

    def __init__(self, base: Sampler[int], skip: int):
        self.base, self.skip = base, skip

    def __iter__(self) -> Iterator[int]:
        it = iter(self.base)
        for _ in range(self.skip):
            next(it)
        return it

    def __len__(self) -> int:
        return max(0, len(self.base) - self.skip)


def batches_per_epoch(dataset: Dataset, batch_size: int, world_size: int) -> int:
    """Full batches one rank gets per epoch (partial batches are dropped, as in the loader below)."""
    return (len(dataset) // world_size) // batch_size


def make_loader(dataset: Dataset, *, batch_size: int, rank: int, world_size: int, seed: int, epoch: int,
                skip_batches: int = 0, workers: int = 0, pin_memory: bool = False) -> DataLoader:
    """One epoch's loader. The order comes from PyTorch's DistributedSampler (shuffled by seed + epoch; rank r
    takes every world_size-th index), also for a single process, so a global batch of world_size x
    batch_size images is the same set of samples whatever the number of processes."""
    sampler = DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed,
                                 drop_last=True)
    sampler.set_epoch(epoch)
    # Its own generator: a DataLoader otherwise draws its workers' base seed from the global RNG each time an
    # epoch starts, so a resumed run (which starts one epoch iterator more) would shift dropout's stream.
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch * 7919 + rank)
    return DataLoader(dataset, batch_size=batch_size, sampler=_SkipSampler(sampler, skip_batches * batch_size),
                      num_workers=workers, pin_memory=pin_memory, drop_last=True, generator=generator)
