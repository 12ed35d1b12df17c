"""Run by tests/core/test_distributed.py under torchrun: each rank checks :mod:`actlab.core.distributed` against
the numbers it must give, and rank 0 writes what it saw."""

import json
import sys

import torch

from actlab.core.distributed import start
from actlab.core.errors import ActlabError

d = start("cpu", verb="driver")
assert d.world == 2 and d.device.type == "cpu"
items = list(range(7))
mine = d.shard(items)
# gradients: rank r's parameter gets grad (r+1) * [1, 2, 3]; a second parameter has no grad on rank 1
p, q = torch.nn.Parameter(torch.zeros(3)), torch.nn.Parameter(torch.zeros(2))
p.grad = (d.rank + 1) * torch.tensor([1.0, 2.0, 3.0])
if d.rank == 0:
    q.grad = torch.tensor([5.0, 7.0])
d.sum_grads([p, q])
sums = d.sum_floats({"loss": 0.25 * (d.rank + 1), "n": len(mine)})
obj = d.broadcast({"from": d.rank})
# a rank without examples passes no keys: missing keys count as 0
partial = d.sum_floats({"a": 1.0, "b": 2.0} if d.rank == 1 else {}, keys_may_differ=True)
decided = d.from_main(lambda: f"rank {d.rank} decided")
order = []
first = d.main_first(lambda: order.append(d.rank) or d.rank)
try:  # a user error on rank 0 reaches every rank as the same one line
    d.from_main(lambda: (_ for _ in ()).throw(ActlabError("bad --x 3")))
    err = None
except ActlabError as e:
    err = str(e)
d.barrier()
out = {
    "rank": d.rank,
    "shard": list(mine),
    "p": p.grad.tolist(),
    "q": q.grad.tolist(),
    "sums": sums,
    "obj": obj,
    "partial": partial,
    "decided": decided,
    "first": first,
    "err": err,
}
with open(f"{sys.argv[1]}.{d.rank}.json", "w") as f:
    json.dump(out, f)
