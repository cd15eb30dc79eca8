"""Train a bundled cnnkern model: ``python -m cnnkern.train --model mobilenet_v2 [options]``.

Synthetic data by default (a learnable pattern-per-class set, see cnnkern/training/data.py), an ImageFolder
with ``--data PATH``. SGD with momentum, cosine (or constant) LR with optional warm-up, AMP (bf16, or fp16
with a GradScaler), channels_last, torch.compile, checkpoint save/resume. Several GPUs or nodes: the same
command under torchrun (PyTorch's DistributedDataParallel; only rank 0 logs and saves)::

    python -m cnnkern.train --model shufflenet_v2_x0_5 --image-size 64 --steps 200 --device cpu
    torchrun --nproc_per_node=8 -m cnnkern.train --model mobilenet_v2 --amp bf16 --channels-last \\
        --batch-size 128 --epochs 3 --checkpoint ckpt.pt
    python -m cnnkern.train --model mobilenet_v2 --epochs 3 --resume ckpt.pt --checkpoint ckpt.pt

``--batch-size`` is per process: the global batch is batch size x world size.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

import cnnkern
from cnnkern.training import checkpoint as ckpt
from cnnkern.training import distributed as D
from cnnkern.training.data import SyntheticImages, batches_per_epoch, image_folder, make_loader
from cnnkern.training.optim import lr_factor, param_groups, set_train_mode
from cnnkern.training.progress import Progress

AMP_DTYPES = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}
BACKENDS = ("auto", "reference", "triton", "cuda")


def _positive(kind=int):
    def parse(text: str):
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        return value
    return parse


def _non_negative(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _model_arg(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep or not key.isidentifier():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE (e.g. width_mult=0.25), got {text!r}")
    for kind in (int, float):
        try:
            return key, kind(value)
        except ValueError:
            pass
    return key, {"true": True, "false": False}.get(value.lower(), value)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m cnnkern.train", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    a = p.add_argument
    a("--model", default="mobilenet_v2", help="a name from cnnkern.models.list_models()")
    a("--model-arg", action="append", type=_model_arg, default=[], metavar="KEY=VALUE",
      help="extra constructor argument, e.g. width_mult=0.25 (repeatable)")
    a("--num-classes", type=_positive(), help="default: the ImageFolder's class count, 10 for synthetic data")
    a("--data", help="ImageFolder root (one sub-directory per class); default: synthetic data")
    a("--synthetic-size", type=_positive(), default=12800, help="images in the synthetic set")
    a("--image-size", type=_positive(), default=224)
    a("--batch-size", type=_positive(), default=64, help="per process")
    a("--epochs", type=_positive(), default=1)
    a("--steps", type=_positive(), help="total optimizer steps (overrides --epochs)")
    a("--stop-after", type=_positive(), metavar="STEPS",
      help="end this run after STEPS optimizer steps (saving a checkpoint), e.g. to fit a job time limit; "
           "the LR schedule still spans --steps/--epochs, so --resume continues it exactly")
    a("--lr", type=_non_negative, default=0.05)
    a("--momentum", type=_non_negative, default=0.9)
    a("--weight-decay", type=_non_negative, default=4e-5, help="not applied to biases and norm parameters")
    a("--lr-schedule", choices=("cosine", "constant"), default="cosine")
    a("--warmup-steps", type=int, default=0)
    a("--label-smoothing", type=_non_negative, default=0.0)
    a("--amp", choices=tuple(AMP_DTYPES), default="none", help="autocast dtype; fp16 adds a GradScaler")
    a("--channels-last", action="store_true", help="model and inputs in channels_last memory format")
    a("--compile", action="store_true", help="torch.compile the (DDP-wrapped) model")
    a("--compile-backend", default="inductor")
    a("--compile-mode", default=None, help="torch.compile mode, e.g. max-autotune")
    a("--backend", choices=BACKENDS, default="auto", help="cnnkern backend (cnnkern.use_backend)")
    a("--freeze-bn", action="store_true", help="BatchNorm in eval mode (running statistics fixed)")
    a("--sync-bn", action="store_true", help="SyncBatchNorm across GPUs under torchrun (CUDA only)")
    a("--checkpoint", metavar="PATH", help="save here after every epoch and at the end")
    a("--resume", metavar="PATH", help="continue from this checkpoint (model, optimizer, scaler, step, RNG)")
    a("--seed", type=int, default=0)
    a("--device", default="auto", help="auto (cuda:LOCAL_RANK if a GPU is visible, else cpu), cpu, cuda, cuda:N")
    a("--workers", type=int, default=0, help="DataLoader worker processes")
    a("--log-every", type=_positive(), default=10, help="steps between progress lines")
    return p


def _models():
    from cnnkern import models

    return models


def parse_args(argv=None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    names = _models().list_models()
    if args.model not in names:
        parser.error(f"unknown model {args.model!r}; available: {', '.join(names)}")
    if args.workers < 0 or args.warmup_steps < 0:
        parser.error(f"--workers and --warmup-steps must be >= 0, got {args.workers} and {args.warmup_steps}")
    if args.image_size < 8:
        parser.error(f"--image-size {args.image_size} is too small; the models downsample by 32 (use >= 8)")
    if args.backend != "auto":
        why = cnnkern.backend_status().get(args.backend)
        if why is not None:
            parser.error(f"--backend {args.backend} cannot run here: {why}")
    if args.sync_bn and args.device == "cpu":
        parser.error("--sync-bn needs CUDA (PyTorch's SyncBatchNorm does not run on the CPU); "
                     "use --freeze-bn for exact multi-process results on the CPU")
    if args.data is None and args.synthetic_size < 2:
        parser.error("--synthetic-size must be >= 2")
    return args


def train(argv=None) -> dict:
    """Run training; returns what happened (steps, per-log-window history, final loss) for callers."""
    args = parse_args(argv)
    env = D.env_from_torchrun()
    device = D.resolve_device(args.device, env)
    D.init(env, device)
    try:
        with cnnkern.use_backend(args.backend):
            return _train(args, env, device)
    finally:
        D.cleanup()


def _train(args: argparse.Namespace, env: D.DistEnv, device: torch.device) -> dict:
    torch.manual_seed(args.seed)
    random.seed(args.seed)
    if args.data:
        dataset = image_folder(args.data, args.image_size)
        num_classes = args.num_classes or len(dataset.classes)
    else:
        num_classes = args.num_classes or 10
        dataset = SyntheticImages(args.synthetic_size, num_classes, args.image_size, seed=args.seed)
    epoch_len = batches_per_epoch(dataset, args.batch_size, env.world_size)
    if epoch_len == 0:
        raise ValueError(f"{len(dataset)} images are fewer than one batch of {args.batch_size} per process "
                         f"x {env.world_size} processes")
    total = args.steps or args.epochs * epoch_len

    # Same seed on every rank: identical initial weights (DDP also broadcasts rank 0's).
    model = _models().get_model(args.model, num_classes=num_classes, **dict(args.model_arg))
    if args.sync_bn and env.enabled:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    fmt = torch.channels_last if args.channels_last else torch.preserve_format
    model.to(device=device, memory_format=fmt)
    optimizer = torch.optim.SGD(param_groups(model, args.weight_decay), lr=args.lr, momentum=args.momentum)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, total, args.warmup_steps, args.lr_schedule))
    scaler = torch.amp.GradScaler(device.type, enabled=args.amp == "fp16")
    # Per-rank RNG streams (dropout, augmentation) after the shared initialisation.
    torch.manual_seed(args.seed + env.rank)
    random.seed(args.seed + env.rank)

    step = 0
    if args.resume:
        doc = ckpt.load(args.resume)
        try:
            model.load_state_dict(doc["model"])
        except RuntimeError as e:
            raise RuntimeError(f"--resume {args.resume}: the checkpoint does not fit --model {args.model} "
                               f"with {num_classes} classes (saved with --model {doc['args'].get('model')}): "
                               f"{e}") from e
        optimizer.load_state_dict(doc["optimizer"])
        scheduler.load_state_dict(doc["scheduler"])
        scaler.load_state_dict(doc["scaler"])
        step = doc["step"]
        if len(doc["rng"]) == env.world_size:
            ckpt.set_rng_state(doc["rng"][env.rank], device)
        elif env.is_main:
            print(f"note: {args.resume} was saved by {len(doc['rng'])} process(es), this run has "
                  f"{env.world_size}: RNG streams restart from --seed (data order is unaffected)")
        if step >= total:
            raise ValueError(f"--resume {args.resume} is at step {step}, already at or past the {total} steps "
                             "asked for; raise --steps/--epochs to train further")

    net: nn.Module = model
    if env.enabled:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda"
                                                  else None)
    if args.compile:
        net = torch.compile(net, backend=args.compile_backend, mode=args.compile_mode)
    end = total if args.stop_after is None else min(total, step + args.stop_after)
    amp_dtype = AMP_DTYPES[args.amp]
    progress = Progress(total, step, enabled=env.is_main)
    progress.message(
        f"cnnkern.train: {args.model} ({sum(p.numel() for p in model.parameters()) / 1e6:.2f} M params, "
        f"{num_classes} classes) on {device} x {env.world_size} process(es), backend {args.backend}, "
        f"{'ImageFolder ' + args.data if args.data else 'synthetic data'} ({len(dataset)} images, "
        f"{args.image_size}px), global batch {args.batch_size * env.world_size}, amp {args.amp}, "
        f"steps {step} -> {end} of {total} ({epoch_len} per epoch)")

    history: list[dict] = []
    window = torch.zeros(3, dtype=torch.float64, device=device)  # loss sum, correct, images (this rank)
    t_window, steps_window = time.perf_counter(), 0
    while step < end:
        epoch, skip = divmod(step, epoch_len)
        loader = make_loader(dataset, batch_size=args.batch_size, rank=env.rank, world_size=env.world_size,
                             seed=args.seed, epoch=epoch, skip_batches=skip, workers=args.workers,
                             pin_memory=device.type == "cuda")
        set_train_mode(net, args.freeze_bn)
        for images, labels in loader:
            images = images.to(device, non_blocking=True, memory_format=fmt)
            labels = labels.to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
                logits = net(images)
            loss = F.cross_entropy(logits.float(), labels, label_smoothing=args.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            lr = optimizer.param_groups[0]["lr"]
            scheduler.step()
            step += 1
            steps_window += 1
            with torch.no_grad():
                window += torch.stack([loss.detach().double() * labels.numel(),
                                       (logits.argmax(1) == labels).sum().double(),
                                       torch.tensor(labels.numel(), dtype=torch.float64, device=device)])
            if step % args.log_every == 0 or step == end:
                totals = D.sum_across_ranks(window.clone()).tolist()
                elapsed = time.perf_counter() - t_window
                stats = {"step": step, "epoch": epoch, "loss": totals[0] / totals[2], "acc": totals[1] / totals[2],
                         "lr": lr, "images_per_s": totals[2] / elapsed}
                if not math.isfinite(stats["loss"]):
                    raise FloatingPointError(f"loss is {stats['loss']} at step {step}: training diverged "
                                             f"(lower --lr {args.lr:g}?)")
                history.append(stats)
                progress.update(step, epoch, stats)
                window.zero_()
                t_window, steps_window = time.perf_counter(), 0
            if step == end:
                break
        if args.checkpoint and (step % epoch_len == 0 or step == end):
            _save(args, env, device, model, optimizer, scheduler, scaler, step, epoch)
            progress.message(f"saved {args.checkpoint} at step {step}")
    progress.close()
    return {"steps": step, "total_steps": total, "epoch_steps": epoch_len, "world_size": env.world_size,
            "history": history, "final_loss": history[-1]["loss"] if history else None,
            "num_classes": num_classes}


def _save(args, env, device, model, optimizer, scheduler, scaler, step, epoch) -> None:
    """Collective: every rank contributes its RNG state; rank 0 writes."""
    rng_states = D.all_gather_objects(ckpt.rng_state(device), env)
    if env.is_main:
        rng_states = [{k: (v.cpu() if torch.is_tensor(v) else v) for k, v in s.items()} for s in rng_states]
        ckpt.save(args.checkpoint, model=model, optimizer=optimizer, scheduler=scheduler, scaler=scaler,
                  step=step, epoch=epoch, rng_states=rng_states, args=vars(args))
    D.barrier()


def main(argv=None) -> int:
    train(argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
