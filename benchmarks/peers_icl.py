"""ICL evaluation: actlab's prefix-cached scoring vs lm-evaluation-harness's HF model, same model and prompts.

    .venv/bin/python benchmarks/peers_icl.py                 # zoo tiny if built, else random-tiny; 1 thread
    .venv/bin/python benchmarks/peers_icl.py --queries 256 --demos 16 --reps 5

The workload is IA2's base-with-ICL evaluation of one run: the same ``--demos`` demos (synthetic sst2 pool) before
each of ``--queries`` queries; the prediction is the label whose (single) token is likeliest. Timed in one process,
repetitions interleaved (machine load hits all alike):

* **actlab**: :func:`actlab.ia2.evaluate.shared_prefix_next_token_logits` (the demos prefilled once, their KV cache
  shared by batches of right-padded queries), then the label tokens' log-probabilities;
* **lm-eval, requests**: ``lm_eval.models.huggingface.HFLM`` wrapping the *same* model object, one
  ``loglikelihood`` request per (prompt, label) — the harness's model path (it sorts by length, batches, and reuses
  one forward for all single-token continuations of a context);
* **lm-eval, task**: ``lm_eval.simple_evaluate`` on a local ``multiple_choice`` task definition (a YAML over a JSONL
  file of the same prompts) — what a user of the harness runs; predictions read from its logged samples.

Prints examples/s with median [min–max] over repetitions, the ratios (goal ≥ 5×), and the agreement checks: the
same predicted label for every query and max |Δ log-prob| of the label tokens.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import sys
import tempfile
from pathlib import Path

import torch

from _bench import dump, interleave, load_model, machine, med, peer, version

TASK_YAML = """task: actlab_icl_peer
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: "{{{{prompt}}}}"
doc_to_choice: {choices}
doc_to_target: label
target_delimiter: ""
metric_list:
  - metric: acc
"""


def workload(tok, dataset: str, demos: int, queries: int, unique: bool = True):
    from actlab.data import build_icl_prompt, get_dataset, load_pool, prepare

    with tempfile.TemporaryDirectory() as d:
        prepare(dataset, d, num_train_samples=max(64, demos * 2), num_val_samples=4 * queries)
        train, val = load_pool(dataset, d, "train"), load_pool(dataset, d, "val")
    labels = list(get_dataset(dataset).labels)
    if unique:  # distinct queries: the harness scores identical prompts once (see docs/benchmarks.md)
        seen: set[str] = set()
        val = [q for q in val if not (q["prompt"] in seen or seen.add(q["prompt"]))]
    qs = val[:queries]
    prompts = [build_icl_prompt(train[:demos], q) for q in qs]
    golds = [labels.index(q["answer"]) for q in qs]
    return prompts, labels, golds


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="auto", help="auto (tiny if built, else random-tiny), random-tiny, or a name")
    ap.add_argument("--dataset", default="syn_sst2")
    ap.add_argument("--demos", type=int, default=8)
    ap.add_argument("--queries", type=int, default=128)
    ap.add_argument("--batch_size", type=int, default=32)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no_task", action="store_true", help="skip the simple_evaluate (task definition) variant")
    ap.add_argument(
        "--duplicates",
        action="store_true",
        help="keep the pool's repeated queries (the synthetic pools repeat sentences; the harness scores "
        "an identical prompt once, actlab every time)",
    )
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    peer("lm_eval", "lm-eval")
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    from actlab.ia2.evaluate import common_prefix_len, label_first_tokens, shared_prefix_next_token_logits

    for name in ("lm-eval", "lm_eval", "datasets", "evaluate"):
        logging.getLogger(name).setLevel(logging.ERROR)
    model, tok, mname = load_model(args.model)
    prompts, labels, golds = workload(tok, args.dataset, args.demos, args.queries, unique=not args.duplicates)
    n = len(prompts)
    if n < args.queries:
        print(f"  note: the pool has only {n} distinct queries (asked for {args.queries})")
    enc = [tok(p)["input_ids"] for p in prompts]
    label_ids = label_first_tokens(tok, prompts[0], labels)
    for lab in labels:  # the comparison needs single-token labels (the IA2 single-token tasks)
        assert len(tok(prompts[0] + lab)["input_ids"]) == len(enc[0]) + 1, f"label {lab!r} is not one token"

    lm = HFLM(pretrained=model, tokenizer=tok, batch_size=args.batch_size, device="cpu", max_length=4096)
    requests = [Instance("loglikelihood", {}, (p, lab), idx=j) for p in prompts for j, lab in enumerate(labels)]
    out: dict[str, object] = {}

    def actlab_run():
        with torch.no_grad():
            logits = shared_prefix_next_token_logits(model, tok, prompts, batch_size=args.batch_size)
        out["actlab"] = torch.log_softmax(logits.float(), -1)[:, label_ids]

    def harness_requests():
        res = lm.loglikelihood(requests, disable_tqdm=True)
        out["lm_eval"] = torch.tensor([ll for ll, _ in res]).view(n, len(labels))

    fns = {"actlab": actlab_run, "lm_eval_requests": harness_requests}
    tmp = tempfile.TemporaryDirectory()
    if not args.no_task:
        from lm_eval import simple_evaluate
        from lm_eval.tasks import TaskManager

        data = Path(tmp.name) / "docs.jsonl"
        data.write_text("".join(json.dumps({"prompt": p, "label": g}) + "\n" for p, g in zip(prompts, golds)))
        (Path(tmp.name) / "task.yaml").write_text(TASK_YAML.format(data=data, choices=json.dumps(labels)))
        tm = TaskManager(include_path=tmp.name, include_defaults=False)

        def harness_task():
            with contextlib.redirect_stderr(io.StringIO()):  # the harness's progress bars
                r = simple_evaluate(
                    model=lm,
                    tasks=["actlab_icl_peer"],
                    task_manager=tm,
                    bootstrap_iters=0,
                    log_samples=True,
                    verbosity="ERROR",
                )
            samples = sorted(r["samples"]["actlab_icl_peer"], key=lambda s: s["doc_id"])
            out["lm_eval_task"] = torch.tensor([[float(x[0]) for x in s["filtered_resps"]] for s in samples])
            out["lm_eval_task_acc"] = r["results"]["actlab_icl_peer"]["acc,none"]

        fns["lm_eval_task"] = harness_task
    times = interleave(fns, reps=args.reps, warmup=1)
    tmp.cleanup()

    ours = out["actlab"]
    pred = ours.argmax(-1)
    checks = {"lm_eval_requests": out["lm_eval"]}
    if "lm_eval_task" in out:
        checks["lm_eval_task"] = out["lm_eval_task"]
    res = {
        "distinct_prompts": len(set(prompts)),
        "model": mname,
        "dataset": args.dataset,
        "queries": n,
        "demos": args.demos,
        "labels": labels,
        "batch_size": args.batch_size,
        "threads": args.threads,
        "reps": args.reps,
        "machine": machine(),
        "lm_eval_version": version("lm_eval"),
        "prompt_tokens_mean": sum(map(len, enc)) / n,
        "shared_prefix_tokens": common_prefix_len(enc),
        "times_s": times,
    }
    print(
        f"ICL evaluation on {mname} ({args.dataset}): {n} queries × {args.demos} demos, "
        f"{res['prompt_tokens_mean']:.0f} tokens/prompt ({res['shared_prefix_tokens']} shared), "
        f"{len(set(prompts))} distinct, {len(labels)} labels, batch {args.batch_size}; lm-eval {res['lm_eval_version']}"
    )
    print(f"  {machine()}")
    ok = True
    for k, ll in checks.items():
        same = bool(torch.equal(ll.argmax(-1), pred))
        diff = float((ll - ours).abs().max())
        res[f"same_predictions_{k}"], res[f"max_abs_logprob_diff_{k}"] = same, diff
        ok &= same
        print(f"  agreement actlab vs {k}: same predicted label for all {n}: {same}; max |Δ log p(label)| {diff:.2e}")
    acc = float((pred == torch.tensor(golds)).float().mean())
    res["accuracy_actlab"] = acc
    if "lm_eval_task_acc" in out:
        res["accuracy_lm_eval_task"] = out["lm_eval_task_acc"]
        print(f"  accuracy: actlab {acc:.4f}, lm-eval task {out['lm_eval_task_acc']:.4f}")
    t_ours = times["actlab"]
    print(
        f"  {'actlab (prefix KV cache)':30s} {n / med(t_ours):8.1f} ex/s  "
        f"[{n / max(t_ours):.1f}–{n / min(t_ours):.1f}]"
    )
    for k in fns:
        if k == "actlab":
            continue
        t = times[k]
        per = [a / b for a, b in zip(t, t_ours)]
        r = med(t) / med(t_ours)
        res[f"speedup_vs_{k}"] = r
        res[f"speedup_vs_{k}_range"] = [min(per), max(per)]
        print(
            f"  {k:30s} {n / med(t):8.1f} ex/s  [{n / max(t):.1f}–{n / min(t):.1f}]   actlab is {r:.1f}× "
            f"[{min(per):.1f}–{max(per):.1f}] (goal ≥ 5×)"
        )
    dump(args.json, res)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
