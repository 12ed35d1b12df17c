"""IAV training step vs TRL's ``DPOTrainer`` step on the same preference pairs: time per step and peak memory.

    .venv/bin/python benchmarks/peers_iav.py                        # random-tiny and random-tiny-L32, 1 thread
    .venv/bin/python benchmarks/peers_iav.py --model random-tiny --reps 11

Both start from the same model and the same 8 pairs (``syn_hh``, ≤ 96 tokens, prompt ≤ 48) per step:

* **actlab IAV**: one optimizer step of the alignment head (frozen backbone, the trainer's ``batch_loss`` + fused
  AdamW), as ``actlab iav train`` does it;
* **TRL DPO**: ``trl.DPOTrainer.training_step`` + its optimizer step on the same pairs (full fine-tuning against a
  frozen reference copy, sigmoid loss, β = 0.1: the DPO baseline ``actlab iav baselines`` trains).

Timings interleaved in one process (median [min–max]). Peak memory: each method runs in its own fresh child process; after
one warm-up step (which allocates the optimizer state) the peak resident set is reset (Linux ``clear_refs``) and the
rise of the peak over the resident set during 3 more steps is reported (activations, gradients, temporaries). Agreement: at the start both losses must equal ln 2 (IAV's alignment head
starts at zero, DPO's policy equals its reference), and the number of response tokens per step is printed for both.

TRL 1.16 has no reward-guided decoding path (its generation code serves its trainers' rollouts; the
``BestOfNSampler`` of older versions is gone), so IAV's decode is compared with GenARM-style decoding in
``benchmarks/iav.py`` instead.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import warnings

import torch

from _bench import dump, fmt_ratio, interleave, load_model, machine, peer, ratio_spread, spread, version


def setup(name: str, n_pairs: int, seq: int):
    from actlab.iav.data import load_rows, tokenize

    layers = int(name.rsplit("L", 1)[1]) if name.startswith("random-tiny-L") else 4
    lm, tok, _ = load_model("random-tiny" if name.startswith("random-tiny") else name, layers=layers, max_pos=512)
    rows = load_rows("syn_hh", "test", n_pairs)
    data = tokenize(rows, tok, seq, seq // 2)
    return lm, tok, rows, data


def iav_step_fn(lm, tok, data, n_pairs: int):
    from actlab.iav.config import LossConfig
    from actlab.iav.model import IAVModel
    from actlab.iav.trainer import adamw, batch_loss

    iav = IAVModel(lm, tokenizer=tok)
    cfg = LossConfig()
    opt = adamw([p for p in iav.parameters() if p.requires_grad], lr=1e-4)
    idx = torch.arange(n_pairs)
    first = float(batch_loss(iav, data, idx, cfg)[0].detach())
    resp = int(sum(data.side(s, idx)[2].sum() for s in ("chosen", "rejected")))

    def step():
        loss, _ = batch_loss(iav, data, idx, cfg)
        loss.backward()
        opt.step()
        opt.zero_grad()

    return step, first, resp


def dpo_step_fn(lm, tok, rows, n_pairs: int, seq: int, workdir: str):
    import copy

    from trl import DPOConfig, DPOTrainer

    from actlab.iav.baselines import _common, _dataset

    model = copy.deepcopy(lm).train().requires_grad_(True)  # IAVModel froze the shared backbone in place
    args = DPOConfig(beta=0.1, loss_type=["sigmoid"], **_common(workdir, 1000, n_pairs, 5e-5, seq, 0))
    args.max_prompt_length = seq // 2 if hasattr(args, "max_prompt_length") else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = DPOTrainer(
            model=model,
            ref_model=copy.deepcopy(lm).eval(),
            args=args,
            train_dataset=_dataset(rows[:n_pairs]),
            processing_class=tok,
        )
    trainer.create_optimizer_and_scheduler(num_training_steps=1000)
    trainer.current_gradient_accumulation_steps = 1  # set by Trainer's own loop; we drive training_step directly
    batch = next(iter(trainer.get_train_dataloader()))
    with torch.no_grad():
        first = float(trainer.compute_loss(trainer.model, batch))
    mask_keys = [k for k in batch if k.endswith("completion_mask") or k.endswith("loss_mask")]
    resp = int(sum(batch[k].sum() for k in mask_keys)) if mask_keys else -1

    def step():
        trainer.training_step(trainer.model, batch)
        trainer.optimizer.step()
        trainer.optimizer.zero_grad()

    return step, first, resp


def rss_mib(field: str = "VmRSS") -> float:
    """Resident set (``VmRSS``) or its peak since the last reset (``VmHWM``), MiB (Linux)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1]) / 1024
    return float("nan")


def memory_child(method: str, name: str, n_pairs: int, seq: int) -> None:
    """Print one JSON line: peak memory rise over the loaded model and data during 3 steps of ``method``."""
    torch.manual_seed(0)
    lm, tok, rows, data = setup(name, n_pairs, seq)
    with tempfile.TemporaryDirectory() as d:
        step = (
            iav_step_fn(lm, tok, data, n_pairs) if method == "iav" else dpo_step_fn(lm, tok, rows, n_pairs, seq, d)
        )[0]
        step()  # first step: the optimizer state and the allocator's pools
        base = rss_mib()
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset the peak (VmHWM) to the current resident set
        for _ in range(3):
            step()
    peak = rss_mib("VmHWM")
    print(json.dumps({"method": method, "base_rss_mib": base, "peak_rss_mib": peak, "rise_mib": peak - base}))


def run_model(name: str, args) -> dict:
    from actlab.iav.trainer import keep_freed_memory

    keep_freed_memory()
    lm, tok, rows, data = setup(name, args.pairs, args.seq_length)
    n_body = sum(p.numel() for n, p in lm.named_parameters() if "embed" not in n and "lm_head" not in n)
    with tempfile.TemporaryDirectory() as d:
        iav_step, iav_first, iav_resp = iav_step_fn(lm, tok, data, args.pairs)
        dpo_step, dpo_first, dpo_resp = dpo_step_fn(lm, tok, rows, args.pairs, args.seq_length, d)
        times = interleave({"actlab_iav": iav_step, "trl_dpo": dpo_step}, reps=args.reps, warmup=2)
    mem = {}
    if not args.no_memory:
        for m in ("iav", "dpo"):
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--_memory_child",
                    m,
                    "--model",
                    name,
                    "--pairs",
                    str(args.pairs),
                    "--seq_length",
                    str(args.seq_length),
                    "--threads",
                    str(args.threads),
                ],
                capture_output=True,
                text=True,
                env=os.environ.copy(),
            )
            lines = [x for x in out.stdout.splitlines() if x.startswith("{")]
            mem[m] = json.loads(lines[-1]) if lines else {"error": out.stderr.strip().splitlines()[-1:]}
    r = ratio_spread(times["trl_dpo"], times["actlab_iav"])
    ln2 = math.log(2)
    res = {
        "model": name,
        "params_body": n_body,
        "pairs": args.pairs,
        "seq_length": args.seq_length,
        "times_s": times,
        "dpo_over_iav": r,
        "first_loss_iav": iav_first,
        "first_loss_dpo": dpo_first,
        "response_tokens_iav": iav_resp,
        "response_tokens_dpo": dpo_resp,
        "memory": mem,
    }
    print(f"model {name} (body {n_body / 1e6:.2f}M params), {args.pairs} pairs/step, ≤{args.seq_length} tokens")
    print(
        f"  agreement: first loss IAV {iav_first:.6f}, DPO {dpo_first:.6f} (both must be ln 2 = {ln2:.6f}); "
        f"response tokens per step IAV {iav_resp}, DPO {dpo_resp}"
    )
    print(
        f"  actlab IAV step {spread(times['actlab_iav'])}; TRL DPOTrainer step {spread(times['trl_dpo'])}; "
        f"DPO ÷ IAV = {fmt_ratio(r)}×"
    )
    for m, v in mem.items():
        if "rise_mib" in v:
            print(
                f"  peak memory of a step, {m}: +{v['rise_mib']:.0f} MiB over the resident set between steps "
                f"({v['base_rss_mib']:.0f} MiB: model, reference, optimizer state)"
            )
        else:
            print(f"  peak memory {m}: failed {v}")
    res["agree"] = abs(iav_first - ln2) < 1e-4 and abs(dpo_first - ln2) < 1e-4
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--model",
        default="random-tiny,random-tiny-L32",
        help="comma-separated: random-tiny, random-tiny-L<n> (tiny's width, n layers), or zoo names/paths",
    )
    ap.add_argument("--pairs", type=int, default=8)
    ap.add_argument("--seq_length", type=int, default=96)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no_memory", action="store_true", help="skip the peak-memory child processes")
    ap.add_argument("--json")
    ap.add_argument("--_memory_child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    peer("trl", "trl")
    if args._memory_child:
        memory_child(args._memory_child, args.model, args.pairs, args.seq_length)
        return 0
    print(f"IAV step vs TRL {version('trl')} DPOTrainer step; {machine()}")
    results = [run_model(n.strip(), args) for n in args.model.split(",") if n.strip()]
    dump(args.json, {"machine": machine(), "results": results})
    return 0 if all(r["agree"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
