"""GPU check: every family on a random model of a 1B-parameter shape, bf16 and fp32, one JSON; no downloads.

    .venv/bin/python benchmarks/gpu_check.py --out gpu_check.json                 # 1B shape on cuda
    .venv/bin/python benchmarks/gpu_check.py --shape micro --device cpu --out x.json   # the fast CPU form (tests)

Shape ``1b``: Llama, hidden 2048, 16 layers, 32 heads / 8 KV heads, MLP 8192, vocabulary 32000 (1.2 B parameters,
untied head), random weights (speed and memory depend on the shape, not the weights), the micro word-level tokenizer
for text (its ids are a subset of the vocabulary). For each dtype (``--dtypes``, default bf16 then fp32) and each
family it records tokens/s (or examples/s), the peak memory of the family's work (``torch.cuda.max_memory_allocated``
on a GPU, the peak resident set on a CPU) and the values that bf16 and fp32 are compared on:

* ``capture`` — a forward with ``capture(block_output, every layer, last position)``: tokens/s; agreement = relative
  error and cosine of the captured activations.
* ``ia2_step`` — IA2 ``act`` (LoRA qko r 8) on a ``syn_sst2`` run: target build (KV cache) + training steps;
  agreement = the first loss.
* ``iav`` — an IAV training step (alignment head, frozen backbone) and IAV greedy decoding; agreement = the first loss
  and the share of identical greedy tokens.
* ``xmodel`` — last-token activations of a middle layer of A (this shape) and B (half its layers) on the same texts
  and a ridge map A → B; agreement = held-out R² of the map.
* ``icae`` — an ICAE pretraining step (AE + LM losses through compress → decoder) and ICAE greedy decoding;
  agreement = the first loss and the share of identical greedy tokens.

A family that fails records its error and the others still run; the exit code is 1 if any failed. A family is given
``--family_timeout`` seconds' worth of repetitions at most (the whole check is meant to stay under 8 minutes on one
GPU: ``benchmarks/gpu_check.sh``).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import platform
import sys
import tempfile
import time
import traceback

os.environ.setdefault("ACTLAB_QUIET", "1")

import torch  # noqa: E402

SHAPES = {
    "1b": dict(
        hidden=2048,
        layers=16,
        heads=32,
        kv_heads=8,
        ffn=8192,
        vocab=32000,
        batch=8,
        seq=512,
        new=32,
        pairs=8,
        texts=256,
        icae_ctx=1024,
    ),
    "micro": dict(
        hidden=64,
        layers=2,
        heads=4,
        kv_heads=2,
        ffn=128,
        vocab=512,
        batch=2,
        seq=32,
        new=4,
        pairs=2,
        texts=24,
        icae_ctx=96,
    ),
}
FAMILIES = ("capture", "ia2_step", "iav", "xmodel", "icae")


# ------------------------------------------------------------------------------------------------------ helpers
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    else:
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
        except OSError:
            pass


def peak_mib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def timed(fn, device, reps: int, budget_s: float) -> list[float]:
    """Seconds per call of ``fn`` after one warm-up, ``reps`` times or until ``budget_s`` is spent."""
    fn()
    sync(device)
    out: list[float] = []
    start = time.perf_counter()
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        sync(device)
        out.append(time.perf_counter() - t)
        if time.perf_counter() - start > budget_s:
            break
    return out


def median(xs: list[float]) -> float:
    s = sorted(xs)
    return s[len(s) // 2]


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.float().cpu(), b.float().cpu()
    return float((a - b).norm() / b.norm().clamp_min(1e-12))


def min_cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.float().cpu().flatten(0, -2), b.float().cpu().flatten(0, -2)
    return float(torch.nn.functional.cosine_similarity(a, b, dim=-1).min())


def same_share(x: list[list[int]], y: list[list[int]]) -> float:
    pairs = [(u, v) for a, b in zip(x, y) for u, v in zip(a, b)]
    return sum(u == v for u, v in pairs) / max(1, len(pairs))


def tokenizer():
    from actlab.core.models import prepare_tokenizer
    from actlab.core.testing import micro_tokenizer

    return prepare_tokenizer(micro_tokenizer())


def build_model(shape: dict, tok, layers: int | None = None, seed: int = 0):
    """A random Llama of ``shape`` in fp32 on the CPU (moved and cast per dtype by the caller)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        vocab_size=max(shape["vocab"], len(tok)),
        hidden_size=shape["hidden"],
        intermediate_size=shape["ffn"],
        num_hidden_layers=layers or shape["layers"],
        num_attention_heads=shape["heads"],
        num_key_value_heads=shape["kv_heads"],
        max_position_embeddings=max(4096, 2 * shape["icae_ctx"]),
        tie_word_embeddings=False,
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        attn_implementation="sdpa",
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(cfg).eval()


def texts(tok, n: int, n_words: int, seed: int) -> list[str]:
    import random

    from actlab.core.testing import WORDS

    rng = random.Random(seed)
    words = [w for w in WORDS if w.isalpha()]
    return [" ".join(rng.choice(words) for _ in range(n_words)) for _ in range(n)]


# ----------------------------------------------------------------------------------------------------- families
def fam_capture(model, tok, shape, device, dtype, reps, budget):
    from actlab.core.capture import capture

    g = torch.Generator().manual_seed(0)
    ids = torch.randint(10, len(tok), (shape["batch"], shape["seq"]), generator=g).to(device)
    got = {}

    def run():
        with torch.no_grad(), capture(model, "block_output", layers=None, positions=-1) as cap:
            model(input_ids=ids)
        got["acts"] = cap.stack()

    def plain():
        with torch.no_grad():
            model(input_ids=ids)

    t_plain = timed(plain, device, reps, budget / 2)
    reset_peak(device)
    t = timed(run, device, reps, budget / 2)
    n = ids.numel()
    return {
        "tokens_per_s": n / median(t),
        "plain_tokens_per_s": n / median(t_plain),
        "overhead": median(t) / median(t_plain),
        "peak_mib": peak_mib(device),
    }, {"acts": got["acts"].float().cpu()}


def fam_ia2(model, tok, shape, device, dtype, reps, budget, tmp):
    from actlab.data import make_train, prepare
    from actlab.ia2 import IA2TrainConfig, losses
    from actlab.ia2.trainer import prepare as prepare_run

    d = f"{tmp}/ia2data"
    if not os.path.exists(d):
        prepare("syn_sst2", d, num_train_samples=64, num_val_samples=8)
        make_train("syn_sst2", d, num_train_examples=[8], num_runs=1, max_icl_demos=8)
    cfg = IA2TrainConfig(
        "act",
        dataset="syn_sst2",
        model_id=f"gpu-check-{str(dtype).split('.')[-1]}",
        data_dir=d,
        output_dir=f"{tmp}/ia2out",
        num_train_examples=8,
        num_generated_tokens=1,
        cache_dir=f"{tmp}/ia2cache-{str(dtype).split('.')[-1]}",
        lora_type="qko",
        lr=1e-4,
        device=str(device),
        dtype={torch.bfloat16: "bfloat16"}.get(dtype, "float32"),
    )
    reset_peak(device)
    t0 = time.perf_counter()
    pm, tok, items, _, _ = prepare_run(cfg, model, tok)
    sync(device)
    t_build = time.perf_counter() - t0
    opt = torch.optim.Adam([p for p in pm.parameters() if p.requires_grad], lr=1e-4)
    batch = [items["train"][j] for j in range(min(4, len(items["train"])))]
    pm.train()
    first = {}

    def step():
        ls = losses.compute_losses(pm, batch, "act", pad_id=tok.pad_token_id, site="attn_output", layers=None)
        first.setdefault("loss", float(ls["loss"].detach()))
        ls["loss"].backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    t = timed(step, device, reps, budget)
    n_tok = sum(int(b["query_ids"].numel()) if torch.is_tensor(b["query_ids"]) else len(b["query_ids"]) for b in batch)
    return {
        "examples_per_s": len(batch) / median(t),
        "student_tokens_per_s": n_tok / median(t),
        "step_s": median(t),
        "target_build_s": t_build,
        "peak_mib": peak_mib(device),
    }, {"loss": first["loss"]}


def fam_iav(model, tok, shape, device, dtype, reps, budget):
    from actlab.iav.config import LossConfig
    from actlab.iav.data import load_rows, tokenize
    from actlab.iav.generate import IAVStepper, decode
    from actlab.iav.model import IAVModel
    from actlab.iav.trainer import adamw, batch_loss

    rows = load_rows("syn_hh", "test", shape["pairs"])
    data = tokenize(rows, tok, shape["seq"], shape["seq"] // 2)
    iav = IAVModel(model, tokenizer=tok)
    with torch.no_grad():  # a trained-looking alignment head (zeros would make IAV decode = base decode)
        torch.manual_seed(0)
        iav.align_head.weight.normal_(0, 0.02)
    cfg = LossConfig()
    opt = adamw([p for p in iav.parameters() if p.requires_grad], lr=1e-4)
    idx = torch.arange(shape["pairs"])
    first = {}

    def step():
        loss, _ = batch_loss(iav, data, idx, cfg)
        first.setdefault("loss", float(loss.detach()))
        loss.backward()
        opt.step()
        opt.zero_grad()

    reset_peak(device)
    t = timed(step, device, reps, budget / 2)
    peak_step = peak_mib(device)
    n_tok = 2 * data.batch_length(idx) * shape["pairs"]
    iav.invalidate()
    prompts = [r["prompt"] for r in rows]
    got = {}

    def dec():
        with torch.no_grad():
            got["ids"] = decode(
                IAVStepper(iav, 1.0),
                tok,
                prompts,
                max_new_tokens=shape["new"],
                batch_size=len(prompts),
                device=device,
                return_ids=True,
                stop_at_eos=False,
            )

    reset_peak(device)
    td = timed(dec, device, max(1, reps // 2), budget / 2)
    return (
        {
            "step_tokens_per_s": n_tok / median(t),
            "step_s": median(t),
            "step_peak_mib": peak_step,
            "decode_tokens_per_s": len(prompts) * shape["new"] / median(td),
            "decode_peak_mib": peak_mib(device),
        },
        {"loss": first["loss"], "ids": got["ids"]},
    )


def fam_xmodel(model, tok, shape, device, dtype, reps, budget):
    from actlab.xmodel.align import fit_map
    from actlab.xmodel.extract import pooled_activations

    model_b = build_model(shape, tok, layers=max(1, shape["layers"] // 2), seed=1).to(device=device, dtype=dtype)
    ts = texts(tok, shape["texts"], shape["seq"] // 2, seed=3)
    la, lb = shape["layers"] // 2, max(1, shape["layers"] // 2) // 2
    got = {}

    def extract():
        with torch.no_grad():
            got["X"] = pooled_activations(model, tok, ts, layers=[la], batch_size=shape["batch"])[0]
            got["Y"] = pooled_activations(model_b, tok, ts, layers=[lb], batch_size=shape["batch"])[0]

    reset_peak(device)
    t = timed(extract, device, max(1, reps // 2), budget / 2)
    X, Y = got["X"], got["Y"]
    n = len(ts)
    tr = int(0.75 * n)
    t0 = time.perf_counter()
    m = fit_map("ridge", X[:tr], Y[:tr])
    t_fit = time.perf_counter() - t0
    with torch.no_grad():
        pred = m(X[tr:].to(next(m.parameters()).dtype)).float()
    yt = Y[tr:].float()
    r2 = float(1 - ((pred - yt) ** 2).sum() / ((yt - yt.mean(0)) ** 2).sum())
    n_tok = sum(len(tok(x)["input_ids"]) for x in ts)
    return (
        {
            "extract_tokens_per_s": 2 * n_tok / median(t),
            "ridge_fit_s": t_fit,
            "heldout_r2": r2,
            "peak_mib": peak_mib(device),
        },
        {"r2": r2, "X": X},
    )


def fam_icae(model, tok, shape, device, dtype, reps, budget):
    import random

    from actlab.icae.config import ICAEConfig
    from actlab.icae.data import ae_lm_sample
    from actlab.icae.model import ICAE
    from actlab.icae.trainer import ae_lm_loss

    L = shape["icae_ctx"]
    m = 2 ** int(math.log2(max(4, min(128, L // 8))))  # ICAE needs a power of 2
    cfg = ICAEConfig(
        fixed_mem_size=m,
        mean_compression_rate=4,
        lora_r=8,
        max_seq_len=L,
        use_position_identifiers=True,
        attn_implementation="sdpa",
        per_device_train_batch_size=2,
    )
    icae = ICAE(model, tok, cfg)
    icae.ignore_eos = True
    ctx = texts(tok, 4, L, seed=5)
    ids = [tok(x, add_special_tokens=False)["input_ids"][:L] for x in ctx]
    opt = torch.optim.AdamW(icae.trainable_parameters(), lr=1e-4)
    rng = random.Random(0)
    batch = [ae_lm_sample(ids[i % len(ids)], cfg, rng) for i in range(2)]
    first = {}

    def step():
        icae.train()
        loss = ae_lm_loss(icae, batch, cfg)["loss"]
        first.setdefault("loss", float(loss.detach()))
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    reset_peak(device)
    t = timed(step, device, reps, budget / 2)
    peak_step = peak_mib(device)
    n_tok = sum(len(s["context"]) + len(s["target"]) for s in batch)
    icae.eval()
    got = {}

    def dec():
        got["text"] = icae.generate(ctx, ["\nanswer :"] * len(ctx), max_new_tokens=shape["new"])

    reset_peak(device)
    td = timed(dec, device, max(1, reps // 2), budget / 2)
    ids_out = [tok(x, add_special_tokens=False)["input_ids"] for x in got["text"]]
    return (
        {
            "step_tokens_per_s": n_tok / median(t),
            "step_s": median(t),
            "step_peak_mib": peak_step,
            "decode_tokens_per_s": len(ctx) * shape["new"] / median(td),
            "decode_peak_mib": peak_mib(device),
            "context_tokens": L,
            "memory_slots_per_segment": m,
        },
        {"loss": first["loss"], "ids": ids_out},
    )


def agreement(fam: str, a: dict, b: dict) -> dict:
    """bf16 (``a``) vs fp32 (``b``) on what each family is compared on."""
    out: dict = {}
    if fam == "capture":
        out = {"rel_err": rel_err(a["acts"], b["acts"]), "min_cosine": min_cosine(a["acts"], b["acts"])}
    if "loss" in a:
        out["loss_bf16"], out["loss_fp32"] = a["loss"], b["loss"]
        out["loss_rel_diff"] = abs(a["loss"] - b["loss"]) / max(1e-12, abs(b["loss"]))
    if "ids" in a:
        out["same_greedy_tokens"] = same_share(a["ids"], b["ids"])
    if fam == "xmodel":
        out = {
            "r2_bf16": a["r2"],
            "r2_fp32": b["r2"],
            "acts_rel_err": rel_err(a["X"], b["X"]),
            "acts_min_cosine": min_cosine(a["X"], b["X"]),
        }
    return out


# --------------------------------------------------------------------------------------------------------- main
def write(path: str, res: dict) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(res, f, indent=2, default=str)
    os.replace(tmp, path)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shape", default="1b", choices=sorted(SHAPES))
    ap.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    ap.add_argument("--dtypes", default="bf16,fp32")
    ap.add_argument("--families", default=",".join(FAMILIES))
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--family_timeout", type=float, default=40.0, help="seconds of timed repetitions per family")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's; tests use 1)")
    ap.add_argument("--out", default="gpu_check.json")
    args = ap.parse_args(argv)
    dtypes = {"bf16": torch.bfloat16, "fp32": torch.float32}
    names = [d.strip() for d in args.dtypes.split(",") if d.strip()]
    fams = [f.strip() for f in args.families.split(",") if f.strip()]
    for bad in [d for d in names if d not in dtypes] + [f for f in fams if f not in FAMILIES]:
        print(f"gpu_check: unknown dtype or family {bad!r}; valid: {', '.join(dtypes)} / {', '.join(FAMILIES)}")
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    shape = SHAPES[args.shape]
    tok = tokenizer()
    base = build_model(shape, tok)
    n_params = sum(p.numel() for p in base.parameters())
    res: dict = {
        "shape": args.shape,
        "config": shape,
        "params": n_params,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor(),
        "torch": torch.__version__,
        "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "dtypes": names,
        "families": {},
    }
    print(
        f"gpu_check: shape {args.shape} ({n_params / 1e9:.2f} B params) on {device} ({res['device_name']}), "
        f"dtypes {names}, families {fams}",
        flush=True,
    )
    t_all = time.perf_counter()
    failed = []
    with tempfile.TemporaryDirectory() as tmp:
        for fam in fams:
            entry: dict = {}
            keep: dict = {}
            for dn in names:
                t0 = time.perf_counter()
                try:
                    model = copy.deepcopy(base).to(device=device, dtype=dtypes[dn])
                    fn = {"capture": fam_capture, "iav": fam_iav, "xmodel": fam_xmodel, "icae": fam_icae}.get(fam)
                    if fam == "ia2_step":
                        figures, keep[dn] = fam_ia2(
                            model, tok, shape, device, dtypes[dn], args.reps, args.family_timeout, tmp
                        )
                    else:
                        figures, keep[dn] = fn(model, tok, shape, device, dtypes[dn], args.reps, args.family_timeout)
                    figures["wall_s"] = time.perf_counter() - t0
                    entry[dn] = figures
                    print(
                        f"  {fam:9s} {dn}: "
                        + ", ".join(f"{k} {v:.4g}" for k, v in figures.items() if isinstance(v, (int, float))),
                        flush=True,
                    )
                except Exception as e:  # one family's failure must not hide the others' figures
                    entry[dn] = {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()[-2000:]}
                    failed.append(f"{fam}/{dn}")
                    print(f"  {fam:9s} {dn}: FAILED {type(e).__name__}: {e}", flush=True)
                finally:
                    model = None
                    if device.type == "cuda":
                        torch.cuda.empty_cache()
            if "bf16" in keep and "fp32" in keep:
                entry["bf16_vs_fp32"] = agreement(fam, keep["bf16"], keep["fp32"])
                print(
                    f"  {fam:9s} bf16 vs fp32: " + ", ".join(f"{k} {v:.4g}" for k, v in entry["bf16_vs_fp32"].items()),
                    flush=True,
                )
            res["families"][fam] = entry
            write(args.out, res)  # after every family: a run cut short still leaves what it measured
    res["total_s"] = time.perf_counter() - t_all
    res["failed"] = failed
    write(args.out, res)
    print(f"gpu_check: {len(fams)} families in {res['total_s']:.0f} s; failed: {failed or 'none'}; wrote {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
