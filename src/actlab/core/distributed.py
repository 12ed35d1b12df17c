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

**FSDP** (``accelerate launch --use_fsdp --fsdp_version 2``, an accelerate config with ``distributed_type: FSDP``,
i.e. ``ACCELERATE_USE_FSDP=true``; or ``ACTLAB_FSDP=1`` under torchrun): :attr:`Dist.fsdp`. The trainer then calls
:meth:`Dist.shard_model`, which applies FSDP2's ``fully_shard`` to every decoder layer (found by
:mod:`actlab.core.arch` for any architecture) and to the transformer body as the root, so each rank holds 1/N of
the layers' weights and all-gathers one layer at a time. The rule above is unchanged: the losses keep their global
share and FSDP's reduce-scatter *sums* the sharded gradients (its divide factor is set to 1); :meth:`Dist.sum_grads`
sums the rest (parameters outside the layers: embeddings, trainable extras) and skips the sharded ones;
:meth:`Dist.clip_grad_norm_` clips by the global norm; :meth:`Dist.full_state` and :meth:`Dist.full_optimizer`
gather full tensors (collectives: every rank calls them) so rank 0 writes the same files as one process, and a
checkpoint resumes under FSDP or without it.

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

__all__ = ["Dist", "fsdp_requested", "launched_world", "start"]

_TRUE = ("1", "true", "yes", "on")


def fsdp_requested() -> bool:
    """Whether the launch asks for FSDP: accelerate's ``ACCELERATE_USE_FSDP`` (``accelerate launch --use_fsdp`` or a
    config file with ``distributed_type: FSDP``) or ``ACTLAB_FSDP`` (for torchrun)."""
    return any(os.environ.get(k, "").strip().lower() in _TRUE for k in ("ACCELERATE_USE_FSDP", "ACTLAB_FSDP"))


def _is_dtensor(t) -> bool:
    from torch.distributed.tensor import DTensor

    return isinstance(t, DTensor)


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
    fsdp: bool = False

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
        rank with no examples in this batch, counts as zeros). Parameters FSDP shards are skipped: FSDP has summed
        their gradients already."""
        if not self.active:
            return
        params = [p for p in params if not _is_dtensor(p)]
        if not params:
            return
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = torch.cat([g.reshape(-1).to(torch.float32) for g in grads])
        torch.distributed.all_reduce(flat)
        off = 0
        for p, g in zip(params, grads):
            n = g.numel()
            p.grad = flat[off : off + n].view_as(g).to(g.dtype)
            off += n

    def shard_model(self, model: torch.nn.Module) -> torch.nn.Module:
        """FSDP2 on ``model`` (a causal LM, PEFT-wrapped or not), in place: ``fully_shard`` on each decoder layer,
        then on the transformer body that holds them (the root; the body's own parameters outside the layers, such
        as the embeddings and the final norm, stay whole on every rank, so code that calls them directly works).
        The reduce-scatter sums (divide factor 1): the losses already carry their share of the global batch. A
        no-op unless :attr:`fsdp`."""
        if not (self.fsdp and self.active):
            return model
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        from actlab.core import arch

        base = arch.unwrap(model)
        path = arch.layout(base).layers
        blocks = arch.layers(base)
        body = base.get_submodule(path.rpartition(".")[0]) if "." in path else base
        mesh = init_device_mesh(self.device.type, (self.world,))
        inside = {id(p) for p in blocks.parameters()}
        for block in blocks:
            _summing(fully_shard(block, mesh=mesh))
        whole = {p for p in body.parameters() if id(p) not in inside}
        _summing(fully_shard(body, mesh=mesh, ignored_params=whole, reshard_after_forward=True))
        if self.is_main:
            n = sum(p.numel() for p in blocks.parameters())
            log.info(
                "fsdp: %d decoder layers (%.3gM parameters) sharded over %d processes",
                len(blocks),
                n / 1e6,
                self.world,
            )
        return model

    def refuse_fsdp(self, verb: str, why: str) -> None:
        """A trainer without FSDP support, launched with FSDP: one line (on every rank) instead of a silent full
        copy per rank or a hang."""
        if self.fsdp:
            raise ActlabError(
                f"{verb} does not run under FSDP ({why}); launch it data parallel, each process holding the whole "
                f"frozen base: `accelerate launch --multi_gpu --num_processes {self.world}` without --use_fsdp / "
                f"distributed_type: FSDP (or unset ACTLAB_FSDP)"
            )

    def clip_grad_norm_(self, params: Sequence[torch.nn.Parameter], max_norm: float) -> torch.Tensor:
        """:func:`torch.nn.utils.clip_grad_norm_` by the global gradient norm: with FSDP a sharded gradient counts
        each rank's shard once, a whole one (the same on every rank after :meth:`sum_grads`) once."""
        if not any(_is_dtensor(p) for p in params):
            return torch.nn.utils.clip_grad_norm_(params, max_norm)
        grads = [p.grad for p in params if p.grad is not None]
        sq = torch.zeros((), dtype=torch.float64, device=self._comm_device)
        for g in grads:
            if _is_dtensor(g):
                sq += g.to_local().detach().double().pow(2).sum().to(sq.device)
        torch.distributed.all_reduce(sq)
        for g in grads:
            if not _is_dtensor(g):
                sq += g.detach().double().pow(2).sum().to(sq.device)
        total = sq.sqrt().float()
        coef = torch.clamp(max_norm / (total + 1e-6), max=1.0)
        with torch.no_grad():
            for g in grads:
                (g.to_local() if _is_dtensor(g) else g).mul_(coef.to(g.device))
        return total

    def full_state(self, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``tensors`` with every FSDP-sharded one gathered whole (on CPU); a collective under FSDP: every rank
        calls it, with the same keys."""
        return {k: v.full_tensor().cpu() if _is_dtensor(v) else v for k, v in tensors.items()}

    def full_optimizer(self, opt: torch.optim.Optimizer):
        """``opt`` as :mod:`actlab.core.checkpoint` sees it: its ``state_dict()`` with whole tensors (gathered now,
        a collective under FSDP) and a ``load_state_dict`` that shards whole tensors back like their parameters.
        ``opt`` itself without FSDP."""
        if not any(_is_dtensor(p) for g in opt.param_groups for p in g["params"]):
            return opt
        return _FullOptimizer(opt, self)

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


def _summing(module) -> None:
    """An FSDP module whose gradient reduction is a plain sum (no division by the world size, no PREMUL_SUM, which
    gloo lacks)."""
    module.set_gradient_divide_factor(1.0)
    module.set_force_sum_reduction_for_comms(True)


class _FullOptimizer:
    """An FSDP run's optimizer with whole tensors in its state dict (see :meth:`Dist.full_optimizer`)."""

    def __init__(self, opt: torch.optim.Optimizer, dist: Dist):
        self.opt = opt
        sd = opt.state_dict()
        state = {
            i: {k: v.full_tensor().cpu() if _is_dtensor(v) else v for k, v in st.items()}
            for i, st in sd["state"].items()
        }
        self._sd = {"state": state, "param_groups": sd["param_groups"]}

    def state_dict(self) -> dict:
        return self._sd

    def load_state_dict(self, sd: dict) -> None:
        from torch.distributed.tensor import distribute_tensor

        params = [p for g in self.opt.param_groups for p in g["params"]]
        state = {}
        for i, st in sd["state"].items():
            p = params[int(i)]
            state[i] = {
                k: distribute_tensor(v.to(p.device), p.device_mesh, p.placements, src_data_rank=None)
                if _is_dtensor(p) and torch.is_tensor(v) and tuple(v.shape) == tuple(p.shape)
                else v
                for k, v in st.items()
            }
        self.opt.load_state_dict({"state": state, "param_groups": sd["param_groups"]})


_AT_EXIT: list = []


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
    if _close_group not in _AT_EXIT:  # once per process, however many verbs start() the group
        _AT_EXIT.append(_close_group)
        atexit.register(_close_group)
    d = Dist(
        rank=state.process_index,
        world=world,
        local_rank=state.local_process_index,
        device=state.device,
        fsdp=fsdp_requested(),
    )
    if d.is_main:
        kind = "fsdp" if d.fsdp else state.distributed_type.value.lower()
        log.info("%s: %d processes (%s, %s)", verb, world, kind, d.device.type)
    return d
