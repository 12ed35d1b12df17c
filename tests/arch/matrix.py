"""The architecture matrix: one check per (architecture, family), shared by the tests and the docs table.

Each ``check_*`` returns ``"ok"`` or ``"refused: <the one-line error>"`` (an :class:`ActlabError`), and raises
``AssertionError`` when something runs but is wrong. ``python -m tests.arch.matrix`` prints the docs table.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from actlab.core import adapters, arch
from actlab.core.errors import ActlabError
from actlab.core.testing import MATRIX, micro_model, micro_tokenizer

ARCHS = tuple(MATRIX)
# the fast subset run by `make test`: one of each layout and quirk (the rest runs under `pytest -m arch`)
FAST = ("llama", "phi3", "gpt_neox", "opt", "falcon", "gemma2", "cohere", "mixtral")
FAMILIES = ("lora", "ia3", "prompt", "prefix")
# blocks where layer i+1's input is exactly h + attn_output + mlp_output (no norm / multiplier on the branches)
RESIDUAL_SUM = {
    "llama",
    "qwen2",
    "qwen3",
    "mistral",
    "gemma",
    "phi3",
    "phi",
    "gpt2",
    "gpt_neox",
    "gptj",
    "opt",
    "falcon",
    "falcon_new",
    "stablelm",
    "cohere",
    "mixtral",
    "qwen3_moe",
    "qwen2_moe",
    "bloom",
    "gpt_bigcode",
    "starcoder2",
}
MOE = ("mixtral", "qwen3_moe", "qwen2_moe")
IA2_DS = "syn_sst2_remap"
WORDS = ("Friday", "Text", "Label")


def tokenizer():
    return micro_tokenizer(extra_words=WORDS)


def build(name: str, tok=None, seed: int = 0):
    return micro_model(name, tok if tok is not None else tokenizer(), seed=seed)


def refused(e: ActlabError) -> str:
    msg = str(e)
    assert "\n" not in msg and "Traceback" not in msg, msg
    return f"refused: {msg}"


# -------------------------------------------------------------------------------------------------- capture
def check_capture(model, tok) -> str:
    """block_output = hidden_states[i+1] (all but the last layer); attn + mlp outputs sum to the residual update."""
    from actlab.core.capture import capture

    lay = arch.layout(model)
    n = arch.num_layers(model)
    enc = tok(["the cat is red and the dog is blue", "alice has a book"], return_tensors="pt", padding=True)
    with torch.no_grad(), capture(model, list(lay.sites()), layers=None) as cap:
        hs = model(**enc, output_hidden_states=True).hidden_states
    assert len(hs) == n + 1
    for i in range(n - 1):
        assert torch.equal(cap["block_output", i], hs[i + 1]), (lay.model_type, i)
    if lay.model_type in RESIDUAL_SUM or model.config.model_type in RESIDUAL_SUM:
        for i in range(n - 1):
            upd = cap["attn_output", i] + cap["mlp_output", i]
            torch.testing.assert_close(hs[i] + upd, hs[i + 1], atol=1e-4, rtol=1e-4)
    return "ok"


# ------------------------------------------------------------------------------------------------------ IA2
def ia2_data(root: Path) -> Path:
    from actlab.data import make_train, prepare

    prepare("syn_sst2", root, num_train_samples=30, num_val_samples=6, label_template="remap")
    make_train(IA2_DS, root, num_train_examples=[4], num_runs=1, max_icl_demos=3)
    return root


def targets_for(name: str, family: str) -> str:
    """The widest role set each family can take here (MoE experts' fused weights are LoRA-only)."""
    if family == "ia3" and name in MOE:
        return "qkvo"
    return "all"


def check_ia2(name: str, family: str, objective: str, data_dir: Path, out: Path, tok) -> str:
    """One IA2 step of ``family``-``objective`` on a fresh micro ``name``: trains, changes only the adapter."""
    from actlab.ia2 import IA2TrainConfig
    from actlab.ia2.trainer import train

    method = objective if family == "lora" else f"{family}-{objective}"
    kw = dict(
        dataset=IA2_DS,
        model_id=f"micro-{name}",
        data_dir=str(data_dir),
        output_dir=str(out),
        num_train_examples=4,
        num_generated_tokens=2,
        num_virtual_tokens=3,
        lora_r=2,
        lora_alpha=4,
        max_steps=1,
        lr=1e-2,
        dev_eval_steps=100,
        cache_dir=str(out / "targets"),
        lora_type=targets_for(name, "lora"),
        ia3_type=targets_for(name, "ia3"),
    )
    if objective == "tok":
        kw["label_type"] = "icl_outputs"
    model = build(name, tok)
    base = {k: v.detach().clone() for k, v in model.state_dict().items()}
    try:
        cfg = IA2TrainConfig(method, **kw)
        path, pm = train(cfg, model, tok, return_model=True)
    except ActlabError as e:
        return refused(e)
    rows = [json.loads(x) for x in (path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1] and torch.isfinite(torch.tensor(rows[0]["train/loss"])), rows
    fresh = adapters.attach(
        build(name, tok),
        adapters.peft_config(
            family,
            build(name, tok),
            modules=kw["ia3_type"] if family == "ia3" else kw["lora_type"],
            r=2,
            alpha=4,
            num_virtual_tokens=3,
        ),
        seed=0,
    )
    init, trained = adapters.adapter_state(fresh), adapters.adapter_state(pm)
    assert init.keys() == trained.keys()
    assert any(not torch.equal(init[k], trained[k]) for k in init), f"{name} {method}: the adapter did not change"
    now = arch.unwrap(pm).state_dict()
    for k, v in base.items():  # the base weights are untouched (PEFT renames wrapped ones to *.base_layer.*)
        got = now.get(k, now.get(k.replace(".weight", ".base_layer.weight").replace(".bias", ".base_layer.bias")))
        if got is not None:
            assert torch.equal(got, v), f"{name} {method}: base weight {k} changed"
    conf = json.loads((path / "config.json").read_text())
    if family in ("lora", "ia3"):
        assert conf["adapter_modules"], conf
    return "ok"


# ------------------------------------------------------------------------------------------------------ IAV
def check_iav(model, tok) -> str:
    """alpha = 0 gives the model's logits bit for bit (every head path), the heads train, the fused path agrees."""
    from actlab.iav.model import IAVModel

    enc = tok(["the cat is red and the dog is blue", "alice has a book"], return_tensors="pt", padding=True)
    with torch.no_grad():  # the model run as IAV runs its backbone (no cache: GPT-J's cached path rounds apart)
        want = model(**enc, use_cache=False).logits.float()
        torch.testing.assert_close(model(**enc).logits.float(), want, atol=1e-5, rtol=1e-5)
    for frozen in (False, True):
        iav = IAVModel(model, freeze_base_head=frozen)
        with torch.no_grad():
            out = iav(enc["input_ids"], enc["attention_mask"], alpha=0.0)
        assert torch.equal(out["z_ref"], want), f"{arch.model_type(model)}: z_ref is not the model's logits"
        assert torch.equal(out["z_final"], want), f"{arch.model_type(model)}: alpha=0 is not the model's logits"
        assert iav.base_is_ref() == frozen
        h, _ = iav.hidden(enc["input_ids"], enc["attention_mask"])
        torch.testing.assert_close(iav.final_logits(h[:, -1], 0.0), want[:, -1], atol=1e-4, rtol=1e-4)
    with torch.no_grad():
        iav.align_head.weight.normal_(0, 0.1)
    iav.invalidate()
    out = iav(enc["input_ids"], enc["attention_mask"], alpha=0.5)
    torch.testing.assert_close(out["z_final"], out["z_base"] + 0.5 * out["a"])
    out["z_final"].logsumexp(-1).sum().backward()
    assert iav.align_head.weight.grad is not None and iav.align_head.weight.grad.abs().sum() > 0
    h, _ = iav.hidden(enc["input_ids"], enc["attention_mask"])
    torch.testing.assert_close(iav.final_logits(h[:, -1], 0.5), out["z_final"][:, -1].detach(), atol=1e-4, rtol=1e-4)
    model.to(torch.bfloat16)  # bf16: z_ref is still the model bit for bit; the fp32 trainable heads round apart
    iav = IAVModel(model)
    with torch.no_grad():
        want = model(**enc, use_cache=False).logits.float()
        out = iav(enc["input_ids"], enc["attention_mask"], alpha=0.0)
    assert torch.equal(out["z_ref"], want), f"{arch.model_type(model)}: bf16 z_ref is not the model's logits"
    torch.testing.assert_close(out["z_final"], want, atol=0.1 * want.abs().max().item(), rtol=0.05)
    return "ok"


# ----------------------------------------------------------------------------------------------------- ICAE
def check_icae(name: str, tok, root: Path) -> str:
    """ICAE with its defaults on a saved micro model (loaded as a user would): one pretrain step, AE inference."""
    from actlab.core.io import read_jsonl
    from actlab.icae import data, infer, trainer
    from actlab.icae.config import ICAEConfig

    model_dir = root / f"model-{name}"
    if not model_dir.exists():
        build(name, tok).save_pretrained(model_dir)
        tok.save_pretrained(model_dir)
    cfg = ICAEConfig(
        model_name=str(model_dir),
        fixed_mem_size=4,
        mean_compression_rate=4,
        lora_r=2,
        output_dir=str(root / f"icae-{name}"),
        data_dir=str(root / "icae-data"),
        num_train_samples=8,
        num_eval_samples=2,
        batch_size=2,
        max_new_tokens=4,
        max_steps=1,
        logging_steps=1,
        save_steps=100,
        per_device_train_batch_size=2,
        warmup_steps=0,
        max_seq_len=48,
    )
    if not (root / "icae-data" / "pretrain_train.jsonl").exists():
        data.prepare_pretrain(cfg)
    try:
        icae = trainer.build_model(cfg)
        info = trainer.pretrain(cfg, icae)
        summary = infer.run_infer(cfg, icae)
    except ActlabError as e:
        return refused(e)
    assert info["step"] == 1
    rows = read_jsonl(Path(cfg.output_dir) / "predictions" / "ae_icae.jsonl")
    assert len(rows) == 2 and summary["compression/rate"] > 1.0
    return "ok"


# --------------------------------------------------------------------------------------------- docs table
def cell(name: str, key: str, root: Path, memo: dict, tok=None) -> str:
    """One check of ``name`` — ``capture``, a family (its ``act`` and ``tok`` steps), ``iav`` or ``icae`` —
    memoised in ``memo`` under ``(name, key)``: the tests fill it as they go, the docs table reads it."""
    if (name, key) in memo:
        return memo[name, key]
    tok = tok if tok is not None else tokenizer()
    if key == "capture":
        res = check_capture(build(name, tok), tok)
    elif key in FAMILIES:
        data_dir = root / "ia2-data"
        if not (data_dir / ".ready").exists():
            ia2_data(data_dir)
            (data_dir / ".ready").touch()
        got = {check_ia2(name, key, o, data_dir, root / f"ia2-{name}-{key}-{o}", tok) for o in ("act", "tok")}
        res = "ok" if got == {"ok"} else "; ".join(sorted(got - {"ok"}))
    elif key == "iav":
        res = check_iav(build(name, tok), tok)
    else:
        res = check_icae(name, tok, root)
    memo[name, key] = res
    return res


CHECKS = ("capture", *FAMILIES, "iav", "icae")


def cells(name: str, root: Path, memo: dict, tok=None) -> dict[str, str]:
    return {k: cell(name, k, root, memo, tok) for k in CHECKS}


def _short(path: str) -> str:
    parts = path.split(".")
    return ".".join(parts[-2:]) if len(parts) > 1 and parts[-2] in ("experts", "shared_expert") else parts[-1]


def table_rows(root: Path, memo: dict | None = None) -> list[str]:
    """Markdown rows ``| name | model_type | block | roles | capture | LoRA | IA3 | prompt | prefix | IAV | ICAE |``."""
    memo = {} if memo is None else memo
    tok = tokenizer()
    rows = []
    for name in ARCHS:
        model = build(name, tok)
        lay = arch.layout(model)
        c = cells(name, root, memo, tok)
        roles = ", ".join(
            f"{r}={'+'.join(sorted({_short(x) for x in v}))}" for r, v in adapters.role_table(model).items()
        )
        if name in MOE and c["ia3"] == "ok":
            c["ia3"] = "ok (q k v o; MoE experts: LoRA only)"
        rows.append(
            f"| {name} | {lay.model_type} | {lay.block} | {roles} | " + " | ".join(c[k] for k in CHECKS) + " |"
        )
    return rows


HEADER = (
    "| matrix name | model_type | block | roles (q k v o g u d) | capture | LoRA | IA3 | prompt | prefix "
    "| IAV α=0 | ICAE |\n|---|---|---|---|---|---|---|---|---|---|---|"
)
BEGIN, END = "<!-- arch-matrix:begin -->", "<!-- arch-matrix:end -->"


def table(root: Path, memo: dict | None = None) -> str:
    return "\n".join([BEGIN, HEADER, *table_rows(root, memo), END])


if __name__ == "__main__":
    import os
    import sys
    import tempfile

    os.environ.setdefault("ACTLAB_QUIET", "1")
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as d:
        os.environ["ACTLAB_HOME"] = str(Path(d) / "home")
        text = table(Path(d))
    if "--write" in sys.argv:
        doc = Path(__file__).resolve().parents[2] / "docs" / "core.md"
        s = doc.read_text()
        s = s[: s.index(BEGIN)] + text + s[s.index(END) + len(END) :]
        doc.write_text(s)
    print(text)
