"""Process-group setup for runs launched by ``torchrun`` (PyTorch's DistributedDataParallel, nothing else).

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK (and MASTER_ADDR/PORT) in every process it starts; without
them the script runs as a single process and never touches torch.distributed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistEnv:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1 or "RANK" in os.environ

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def env_from_torchrun() -> DistEnv:
    keys = ("RANK", "WORLD_SIZE", "LOCAL_RANK")
    present = [k for k in keys if k in os.environ]
    if not present:
        return DistEnv()
    if len(present) != len(keys):
        missing = ", ".join(k for k in keys if k not in os.environ)
        raise RuntimeError(f"torchrun environment incomplete: {', '.join(present)} set but {missing} not; "
                           "launch with `torchrun --nproc_per_node=N -m cnnkern.train ...`")
    env = DistEnv(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ["LOCAL_RANK"]))
    if not 0 <= env.rank < env.world_size:
        raise RuntimeError(f"RANK={env.rank} out of range for WORLD_SIZE={env.world_size}")
    return env


def resolve_device(name: str, env: DistEnv) -> torch.device:
    """'auto': this process's GPU (cuda:LOCAL_RANK) if there is one, else the CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(name)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"--device {name}: no CUDA GPU is visible")
        if dev.index is None:
            dev = torch.device("cuda", env.local_rank % torch.cuda.device_count())
        torch.cuda.set_device(dev)
    return dev


def init(env: DistEnv, device: torch.device) -> None:
    """nccl between GPUs, gloo between CPU processes."""
    if env.enabled and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        kwargs = {"device_id": device} if device.type == "cuda" else {}
        dist.init_process_group(backend=backend, **kwargs)


def cleanup() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def all_gather_objects(obj, env: DistEnv) -> list:
    if not dist.is_initialized():
        return [obj]
    out = [None] * env.world_size
    dist.all_gather_object(out, obj)
    return out


def sum_across_ranks(t: torch.Tensor) -> torch.Tensor:
    if dist.is_initialized():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()
