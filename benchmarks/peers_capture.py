"""Activation capture and intervention: actlab vs nnsight, pyvene and TransformerLens, same model and inputs.

    .venv/bin/python benchmarks/peers_capture.py                  # random-tiny (or tiny if built), 16 × 128, 1 thread
    .venv/bin/python benchmarks/peers_capture.py --batch 4 --seq 512 --reps 30

Three workloads, each a forward pass under ``torch.no_grad`` over the same ``[batch, seq]`` token ids (no padding),
every tool's repetitions interleaved with a plain ``model(input_ids)`` forward in one process:

1. **one site, last position** — the self-attention output (after ``o_proj``, before the residual add) of the middle
   layer at the last position: actlab ``capture(model, "attn_output", layers=L, positions=-1)``; nnsight
   ``model.layers[L].self_attn.output[0][:, -1].save()``; pyvene a ``CollectIntervention`` on ``attention_output``
   at unit ``pos``; TransformerLens ``run_with_cache(names_filter="blocks.L.hook_attn_out")``.
2. **all layers, all positions** — every decoder layer's output (the residual stream): actlab ``capture(model,
   "block_output")``; nnsight ``layers[i].output.save()`` for each i; pyvene one ``CollectIntervention`` per layer over
   every position; TransformerLens ``hook_resid_post`` of every block; and HF's own ``output_hidden_states=True``.
3. **intervention** — add a fixed vector to that attention output at the last position and return the logits:
   actlab ``intervene(..., mode="add")``; nnsight in-place ``+=`` on the proxy; pyvene ``AdditionIntervention``;
   TransformerLens ``run_with_hooks``.

Overhead = tool time ÷ plain-forward time (wall time, or with ``--clock cpu`` the process's CPU time, which on a
shared machine leaves out waiting for a core — use it for small forwards), ratio of medians, [min–max] of the paired per-repetition ratios. Goal: the
lowest overhead of all, identical activations. Agreement is checked against HF's ``output_hidden_states`` (layer
outputs; the last layer's is compared before the final norm, via actlab) and against actlab (attention output,
intervened logits): ``torch.equal`` and max |Δ|. TransformerLens 4's ``TransformerBridge`` wraps a *copy* of the model
(it swaps submodules and attention implementation in place), so its activations agree to float noise, not bitwise.
A peer that is not installed is reported as skipped.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time

import torch

from _bench import dump, fmt_ratio, have, interleave, load_model, machine, med, ratio_spread, spread, version
from actlab.core import arch
from actlab.core.capture import capture, intervene


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="auto")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument(
        "--clock",
        default="wall",
        choices=("wall", "cpu"),
        help="wall (default) or cpu: the process's CPU time (all threads), which leaves out waiting for a "
        "core on a shared machine; use it with --threads 1",
    )
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    model, tok, mname = load_model(args.model)
    n_layers, L = arch.num_layers(model), arch.num_layers(model) // 2
    d = model.config.hidden_size
    B, T = args.batch, args.seq
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(10, min(len(tok), model.config.vocab_size), (B, T), generator=g)
    v = torch.randn(B, d, generator=g)
    layers = list(range(n_layers))
    got: dict[str, object] = {}

    with torch.no_grad():
        ref = model(input_ids=ids, output_hidden_states=True)
    hs = ref.hidden_states
    hf_model = copy.deepcopy(model)  # wrapping by the peers stops HF's hidden-state recording on ``model`` itself

    def plain():
        model(input_ids=ids)

    def a_last():
        with capture(model, "attn_output", layers=L, positions=-1) as cap:
            model(input_ids=ids)
        got["actlab", 1] = cap[L]

    def a_all():
        with capture(model, "block_output", layers=None, positions=None) as cap:
            model(input_ids=ids)
        got["actlab", 2] = cap.stack()

    def a_int():
        with intervene(model, "attn_output", L, v, positions=-1, mode="add"):
            got["actlab", 3] = model(input_ids=ids).logits

    def hf_all():
        got["hf", 2] = torch.stack(hf_model(input_ids=ids, output_hidden_states=True).hidden_states[1:])

    tools = {
        1: {"plain": plain, "actlab": a_last},
        2: {"plain": plain, "actlab": a_all, "hf": hf_all},
        3: {"plain": plain, "actlab": a_int},
    }
    skipped = []
    if have("nnsight"):
        from nnsight import NNsight

        nm = NNsight(model)

        def n_last():
            with nm.trace(ids):
                h = nm.model.layers[L].self_attn.output[0][:, -1].save()
            got["nnsight", 1] = h

        def n_all():
            outs = []
            with nm.trace(ids):
                for i in layers:
                    outs.append(nm.model.layers[i].output.save())
            got["nnsight", 2] = torch.stack(outs)

        def n_int():
            with nm.trace(ids):
                nm.model.layers[L].self_attn.output[0][:, -1] += v
                lg = nm.output.logits.save()
            got["nnsight", 3] = lg

        tools[1]["nnsight"], tools[2]["nnsight"], tools[3]["nnsight"] = n_last, n_all, n_int
    else:
        skipped.append("nnsight")
    if have("pyvene"):
        import pyvene as pv

        def rep(layer, comp, kind, units=1):
            return {
                "layer": layer,
                "component": comp,
                "unit": "pos",
                "max_number_of_units": units,
                "intervention_type": kind,
            }

        pv_last = pv.IntervenableModel([rep(L, "attention_output", pv.CollectIntervention)], model=model)
        pv_all = pv.IntervenableModel([rep(i, "block_output", pv.CollectIntervention, T) for i in layers], model=model)
        pv_add = pv.IntervenableModel([rep(L, "attention_output", pv.AdditionIntervention)], model=model)
        last_loc, all_loc = [[[T - 1]] * B], [[list(range(T))] * B] * n_layers

        def p_last():
            (_, coll), _ = pv_last(base={"input_ids": ids}, unit_locations={"base": last_loc})
            got["pyvene", 1] = coll[0][:, 0]

        def p_all():
            (_, coll), _ = pv_all(base={"input_ids": ids}, unit_locations={"base": all_loc})
            got["pyvene", 2] = torch.stack(coll)

        def p_int():
            _, cf = pv_add(
                base={"input_ids": ids},
                unit_locations={"sources->base": (None, last_loc)},
                source_representations=v.unsqueeze(1),
            )
            got["pyvene", 3] = cf.logits

        tools[1]["pyvene"], tools[2]["pyvene"], tools[3]["pyvene"] = p_last, p_all, p_int
    else:
        skipped.append("pyvene")
    if have("transformer_lens"):
        from transformer_lens.model_bridge.sources import build_bridge_from_module

        br = build_bridge_from_module(copy.deepcopy(model), type(model).__name__, hf_config=model.config)
        resid = [f"blocks.{i}.hook_resid_post" for i in layers]

        def t_plain():
            br(ids)

        def t_last():
            _, cache = br.run_with_cache(ids, names_filter=f"blocks.{L}.hook_attn_out")
            got["transformer_lens", 1] = cache[f"blocks.{L}.hook_attn_out"][:, -1]

        def t_all():
            _, cache = br.run_with_cache(ids, names_filter=lambda name: name in resid)
            got["transformer_lens", 2] = torch.stack([cache[k] for k in resid])

        def add_last(x, hook):
            x[:, -1] += v
            return x

        def t_int():
            got["transformer_lens", 3] = br.run_with_hooks(ids, fwd_hooks=[(f"blocks.{L}.hook_attn_out", add_last)])

        tools[1]["transformer_lens"], tools[2]["transformer_lens"] = t_last, t_all
        tools[3]["transformer_lens"] = t_int
        tools[1]["transformer_lens (own forward, no hooks)"] = t_plain
    else:
        skipped.append("transformer_lens")

    names = {
        1: f"one site (attn_output, layer {L}), last position",
        2: f"all {n_layers} layers (block_output), all {T} positions",
        3: f"intervention (add at attn_output, layer {L}, last position), logits",
    }
    print(
        f"Capture / intervention on {mname}: batch {B} × {T} tokens, {n_layers} layers, h{d}; "
        f"nnsight {version('nnsight')}, pyvene {version('pyvene')}, transformer-lens {version('transformer-lens')}"
    )
    print(f"  {machine()}; {args.clock} clock")
    for s in skipped:
        print(f"  SKIP: {s} is not installed (pip install -e '.[bench]' -c constraints.txt)")
    res: dict = {
        "clock": args.clock,
        "model": mname,
        "batch": B,
        "seq": T,
        "layers": n_layers,
        "reps": args.reps,
        "machine": machine(),
        "versions": {k: version(k) for k in ("nnsight", "pyvene", "transformer-lens")},
        "workloads": {},
    }
    ok = True
    for w, fns in tools.items():
        with torch.no_grad():
            times = interleave(fns, reps=args.reps, warmup=2, clock=clock)
        # the reference each tool is checked against
        if w == 1:
            want = got["actlab", 1]
        elif w == 2:
            want = torch.stack(list(hs[1:n_layers])) if n_layers > 1 else None
        else:
            want = got["actlab", 3]
        print(f"  [{w}] {names[w]}")
        rows = {}
        for k in fns:
            row = {"median_s": med(times[k]), "times_s": times[k]}
            if k != "plain":
                row["overhead"] = ratio_spread(times[k], times["plain"])
            out = got.get((k, w))
            agree = ""
            if out is not None and want is not None:
                o = out[: n_layers - 1] if w == 2 else out
                same = bool(torch.equal(o, want))
                diff = float((o - want).abs().max())
                row["identical"], row["max_abs_diff"] = same, diff
                agree = f"identical {same}, max |Δ| {diff:.1e}"
                if (
                    w == 2 and k not in ("actlab", "hf") and ("actlab", 2) in got
                ):  # the last layer (before the final norm)
                    row["identical_to_actlab_all_layers"] = bool(torch.equal(out, got["actlab", 2]))
                    agree += f"; = actlab at every layer: {row['identical_to_actlab_all_layers']}"
                if k in ("actlab", "nnsight", "pyvene") and not same:
                    ok = False
            over = f"overhead {fmt_ratio(row['overhead'])}" if "overhead" in row else ""
            print(f"      {k:42s} {spread(times[k]):32s} {over:28s} {agree}")
            rows[k] = row
        over = {
            k: r["overhead"][0] for k, r in rows.items() if "overhead" in r and "own forward" not in k and k != "hf"
        }
        best = min(over, key=over.get)
        print(f"      lowest overhead: {best} ({over[best]:.3f}); actlab {over['actlab']:.3f}")
        res["workloads"][names[w]] = {"rows": rows, "lowest_overhead": best}
    dump(args.json, res)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
