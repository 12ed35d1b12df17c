"""Several processes on one run: who this process is, its slice of each global batch, gradients summed over ranks.

Every trainer starts with :func:`start`. Under ``accelerate launch`` or ``torchrun`` (``WORLD_SIZE`` > 1) it sets up
the process group through accelerate's :class:`~accelerate.PartialState` (NCCL on GPUs, gloo on CPU, one GPU per
process: ``cuda:LOCAL_RANK``); alone it is a one-process :class:`Dist` that does nothing.

The data-parallel rule every actlab trainer follows (the arithmetic of DDP, without its module wrapper, so capture
hooks, PEFT adapters and gradient checkpointing work unchanged):

* every rank draws the same global batch order (same seed) and takes its contiguous slice (:meth:`Dist.shard`);
* each micro-batch's loss is weighted by its share of the **global** batch, so the per-rank gradients *sum* to the
  one-process gradient of that batch (:meth:`Dist.sum_grads`), and the logged metrics are sums too
  (:meth:`Dist.sum_floats`);
* rank 0 alone owns the run directory (lock, config, metrics, checkpoints, trackers); the others wait at
  :meth:`Dist.barrier` and read what rank 0 wrote. :meth:`Dist.from_main` runs a decision (skip-done, opening the
  run directory) on rank 0 and gives every rank its answer; :meth:`Dist.main_first` lets rank 0 build a shared file
  (a cache) before the others read it. A user error on rank 0 is raised on every rank, so each exits with the same
  one line instead of waiting for rank 0 forever.

A launch whose processes do not form one group (``WORLD_SIZE`` says N but the group has another size) would train N
independent copies into one run directory: it is refused in one line (:class:`~actlab.core.errors.ActlabError`).
"""

from __future__ import annotations

import atexit
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from actlab.core.errors import ActlabError

log = logging.getLogger(__name__)

__all__ = ["Dist", "launched_world", "start"]


def launched_world() -> int:
    """How many processes the launcher says this run has (``WORLD_SIZE``; 1 when not launched)."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        raise ActlabError(f"WORLD_SIZE {os.environ['WORLD_SIZE']!r} is not a process count") from None


@dataclass(frozen=True)
class Dist:
    """This process's place in the run (``rank`` of ``world``) and the device it trains on."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    def shard(self, seq: Sequence) -> Sequence:
        """This rank's contiguous slice of ``seq`` (sizes differ by at most one; a rank may get none)."""
        n = len(seq)
        return seq[self.rank * n // self.world : (self.rank + 1) * n // self.world]

    def barrier(self) -> None:
        if self.active:
            torch.distributed.barrier()

    def sum_grads(self, params: Sequence[torch.nn.Parameter]) -> None:
        """Sum ``params``' gradients over the ranks, in place, in one flat all-reduce (a missing gradient, e.g. on a
        rank with no examples in this batch, counts as zeros)."""
        if not self.active:
            return
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = torch.cat([g.reshape(-1).to(torch.float32) for g in grads])
        torch.distributed.all_reduce(flat)
        off = 0
        for p, g in zip(params, grads):
            n = g.numel()
            p.grad = flat[off : off + n].view_as(g).to(g.dtype)
            off += n

    def sum_floats(self, values: dict[str, float], *, keys_may_differ: bool = False) -> dict[str, float]:
        """``values`` summed over the ranks. Every rank must pass the same keys, unless ``keys_may_differ`` (e.g. a
        rank without examples in this batch passes ``{}``): then the keys are gathered first and a missing one
        counts as 0."""
        if not self.active:
            return dict(values)
        if keys_may_differ:
            got: list = [None] * self.world
            torch.distributed.all_gather_object(got, sorted(values))
            keys = sorted({k for ks in got for k in ks})
        else:
            keys = sorted(values)
        if not keys:
            return {}
        t = torch.tensor([float(values.get(k, 0.0)) for k in keys], dtype=torch.float64, device=self._comm_device)
        torch.distributed.all_reduce(t)
        return dict(zip(keys, t.tolist()))

    def broadcast(self, obj):
        """Rank 0's ``obj`` on every rank (any picklable object)."""
        if not self.active:
            return obj
        box = [obj]
        torch.distributed.broadcast_object_list(box, src=0, device=self._comm_device)
        return box[0]

    def from_main(self, fn, *args, **kwargs):
        """``fn(*args, **kwargs)`` run on rank 0 alone, its result given to every rank. An exception there is raised
        on every rank (an :class:`ActlabError` with its message; on rank 0 the original)."""
        if not self.active:
            return fn(*args, **kwargs)
        res, err, exc = None, None, None
        if self.is_main:
            try:
                res = fn(*args, **kwargs)
            except Exception as e:  # noqa: BLE001 - re-raised below, after the others heard of it
                exc, err = e, (isinstance(e, ActlabError), str(e))
        res, err = self.broadcast((res, err))
        if exc is not None:
            raise exc
        if err is not None:
            raise ActlabError(err[1]) if err[0] else RuntimeError(f"rank 0 failed: {err[1]}")
        return res

    def main_first(self, fn, *args, **kwargs):
        """``fn(*args, **kwargs)`` on every rank, rank 0 first (it writes a shared file the others then read); a
        failure on rank 0 is raised on every rank, as in :meth:`from_main`."""
        if not self.active:
            return fn(*args, **kwargs)
        box: list = []
        self.from_main(lambda: box.append(fn(*args, **kwargs)))
        return box[0] if self.is_main else fn(*args, **kwargs)

    @property
    def _comm_device(self) -> torch.device:
        return self.device if torch.distributed.get_backend() == "nccl" else torch.device("cpu")


def _close_group() -> None:
    """Destroy the process group before the interpreter exits (a gloo group left to the C++ destructors at exit
    sometimes aborts a worker: ``terminate called without an active exception``)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def start(device: str | None = None, *, verb: str = "this verb") -> Dist:
    """The process group of this launch (or one process), on ``device``.

    ``device``: ``None``/``"auto"`` picks ``cuda:LOCAL_RANK`` when there are GPUs, else CPU (gloo: what
    ``accelerate launch --multi_gpu`` on a machine without GPUs means); ``"cpu"`` forces CPU; an explicit ``cuda:N``
    is only valid alone (several processes each take their own GPU).
    """
    world = launched_world()
    if world == 1:
        from actlab.core.models import pick_device

        return Dist(device=pick_device(None if device == "auto" else device))
    if device not in (None, "auto", "cpu", "cuda"):
        raise ActlabError(
            f"--device {device!r} names one device, but {verb} was launched on {world} processes "
            f"(each takes cuda:LOCAL_RANK); valid under a launcher: auto, cuda, cpu"
        )
    from accelerate import PartialState

    cpu = device == "cpu" or (device in (None, "auto") and not torch.cuda.is_available())
    state = PartialState(cpu=cpu)
    if state.num_processes != world or not torch.distributed.is_initialized():
        raise ActlabError(
            f"the launcher started {world} processes (WORLD_SIZE={world}) but they formed a group of "
            f"{state.num_processes}: each would train its own copy into one run directory; launch with "
            f"`accelerate launch --multi_gpu --num_processes {world}` or `torchrun --nproc_per_node "
            f"{world}` (on CPU, --multi_gpu starts gloo workers)"
        )
    atexit.register(_close_group)
    d = Dist(rank=state.process_index, world=world, local_rank=state.local_process_index, device=state.device)
    if d.is_main:
        log.info("%s: %d processes (%s, %s)", verb, world, state.distributed_type.value.lower(), d.device.type)
    return d
