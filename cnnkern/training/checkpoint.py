"""Checkpoints: everything a resumed run needs to continue exactly where the saved one stopped.

Saved: the model (unwrapped from DDP / torch.compile, so the keys are the plain model's), optimizer, LR
scheduler and GradScaler states, the optimizer step count, and every rank's RNG states (gathered to rank 0,
which alone writes). The data order needs no state: it is a function of (seed, epoch) and the step count.
"""

from __future__ import annotations

import os
import random

import torch

FORMAT_VERSION = 1


def rng_state(device: torch.device) -> dict:
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def save(path: str, *, model: torch.nn.Module, optimizer, scheduler, scaler, step: int, epoch: int,
         rng_states: list[dict], args: dict) -> None:
    """Write to a temporary file and rename, so a run killed while saving leaves the previous checkpoint."""
    doc = {
        "format": FORMAT_VERSION,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict(),
        "step": step,
        "epoch": epoch,
        "rng": rng_states,
        "args": args,
    }
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    torch.save(doc, tmp)
    os.replace(tmp, path)


def load(path: str) -> dict:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"--resume {path!r}: no such checkpoint file")
    doc = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(doc, dict) or doc.get("format") != FORMAT_VERSION:
        raise ValueError(f"--resume {path!r} is not a cnnkern.train checkpoint (format {FORMAT_VERSION})")
    return doc
