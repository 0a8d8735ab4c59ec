"""Our device-batch pipeline vs the usual torchvision DataLoader, side by side in one run.

The usual pipeline is the one of PyTorch's "Hyperparameter tuning with Ray Tune" CIFAR-10 tutorial: a dataset
that turns each uint8 image into a PIL image, then ``RandomCrop(32, 4)``, ``RandomHorizontalFlip``, ``ToTensor``,
``Normalize``, served by a ``DataLoader`` with 2 worker processes. Ours: :class:`trainables.data.DeviceBatches`,
as a trial gets it by default (fp32, NCHW), and with the two knobs a trial can switch on, ``channels_last`` and
``amp`` (bf16 autocast), which the usual pipeline lacks.

Measures (1) loader-only images/s and (2) end-to-end training epochs/s for origin_net and simple_cnn, same batch
size, same images, same optimizer; each number is the median of ``--repeats`` passes. Writes the section "Loader
and end-to-end epoch throughput" of docs/benchmarks.md.

    python -m benchmarks.loader                # full measurement (a few minutes on 2 CPU cores); on a GPU when
                                               # there is one: our batches live there, the usual ones are copied
    python -m benchmarks.loader --smoke        # seconds; checks the script runs (CI)
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from benchmarks.common import data_dir, machine, publish


class TutorialDataset(torch.utils.data.Dataset):
    """What torchvision.datasets.CIFAR10 does per item: uint8 array -> PIL -> transforms."""

    def __init__(self, images, labels, mean, std):
        import torchvision.transforms as T

        self.images, self.labels = images, labels
        self.transform = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(),
                                    T.Normalize(mean, std)])

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        from PIL import Image

        return self.transform(Image.fromarray(self.images[i])), int(self.labels[i])


def loaders(ds, n: int, batch_size: int, workers: int, device: torch.device):
    from trainables.data import DeviceBatches

    x, y = ds.split("train")
    x, y = x[:n], y[:n]
    mean, std = ds.channel_stats()
    ours = DeviceBatches(x, y, batch_size, device, shuffle=True, augment=True, mean=mean, std=std)
    fast = DeviceBatches(x, y, batch_size, device, shuffle=True, augment=True, mean=mean, std=std,
                         channels_last=True)
    usual = torch.utils.data.DataLoader(TutorialDataset(x, y, mean, std), batch_size=batch_size, shuffle=True,
                                        num_workers=workers, persistent_workers=workers > 0,
                                        pin_memory=device.type == "cuda")
    return {"cifar-tune DeviceBatches": (ours, False), "cifar-tune DeviceBatches, channels_last + bf16": (fast, True),
            f"torchvision DataLoader ({workers} workers)": (usual, False)}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def loader_only(loader, device: torch.device) -> float:
    """Images/s delivered on ``device`` (the usual pipeline's batches are copied there, as a trial would)."""
    next(iter(loader))  # start workers / warm caches
    t0 = time.perf_counter()
    n = 0
    for xb, yb in loader:
        xb = xb.to(device, non_blocking=True)
        n += len(yb)
    sync(device)
    return n / (time.perf_counter() - t0)


def train_epoch(loader, arch: str, device: torch.device, fast: bool = False) -> float:
    """Images/s of one training epoch; ``fast``: channels_last model and bf16 autocast (the loader matches)."""
    from trainables.models import create_model

    torch.manual_seed(0)
    model = create_model(arch).to(device)
    if fast:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()
    model.train()
    next(iter(loader))
    t0 = time.perf_counter()
    n = 0
    for xb, yb in loader:
        xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=fast):
            loss = loss_fn(model(xb).float(), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        n += len(yb)
    sync(device)
    return n / (time.perf_counter() - t0)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=None)
    p.add_argument("--images", type=int, default=10000, help="training images per measured epoch")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--archs", default="origin_net,simple_cnn")
    p.add_argument("--repeats", type=int, default=3, help="passes per measurement (the median is reported)")
    p.add_argument("--device", default="auto", help="auto (a GPU when there is one), cpu or cuda")
    p.add_argument("--smoke", action="store_true", help="tiny sizes, no doc update")
    args = p.parse_args(argv)
    from trainables.data import load_dataset

    from trainables.train import pick_device

    device = pick_device(args.device)
    ds = load_dataset(data_dir(args.data_dir), download=False)
    n = 512 if args.smoke else args.images
    repeats = 1 if args.smoke else args.repeats
    full_epoch = 45000  # images in the training split: epochs/s below are for a full epoch
    rows = []
    for name, (loader, fast) in loaders(ds, n, args.batch_size, args.workers, device).items():
        # Each measurement is the median of --repeats passes: one pass of the fast loader lasts well under a second.
        if not fast:  # the loader-only row of the fast variant would only repeat the plain one's
            rows.append(("loader only", name, statistics.median(loader_only(loader, device) for _ in range(repeats))))
        for arch in args.archs.split(","):
            rows.append((f"train {arch}", name,
                         statistics.median(train_epoch(loader, arch, device, fast) for _ in range(repeats))))
    lines = [f"{machine()}; run on {device.type}; {n:,} images per measured pass, median of {repeats} passes, batch {args.batch_size}, "
             f"torch threads {torch.get_num_threads()}", "",
             "| what | pipeline | images/s | full epochs/s (45k images) | ÷ usual |", "|---|---|---:|---:|---:|"]
    by_what: dict[str, list] = {}
    for what, name, ips in rows:
        by_what.setdefault(what, []).append((name, ips))
    for what, measured in by_what.items():
        usual = next(ips for name, ips in measured if name.startswith("torchvision"))
        for name, ips in measured:
            lines.append(f"| {what} | {name} | {ips:,.0f} | {ips / full_epoch:.3f} | "
                         f"{f'{ips / usual:.1f}x' if name.startswith('cifar-tune') else ''} |")
    publish("Loader and end-to-end epoch throughput", lines, "loader", args.smoke)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
