"""Fixtures for the IA2 evaluation tests: a saved micro model, a prepared synthetic dataset, fake trained runs."""

import json

import pytest


@pytest.fixture(scope="module")
def ia2_world(tmp_path_factory):
    """``{"root", "model_dir", "data", "outputs"}``: micro Llama saved to disk, syn_sst2 prepared (N=4, 2 runs),
    LoRA adapters for tok/act (2 runs, 2 lrs for act) and an IA3 tok adapter, each with config.json + COMPLETE."""
    import torch
    from peft import IA3Config, LoraConfig, get_peft_model

    from actlab.core.testing import micro_model, micro_tokenizer
    from actlab.data import make_train, prepare

    root = tmp_path_factory.mktemp("ia2")
    tok = micro_tokenizer()
    model = micro_model("llama", tok)
    model_dir = root / "micro"
    model.save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    data = root / "data"
    prepare("syn_sst2", data, num_train_samples=40, num_val_samples=12)
    make_train("syn_sst2", data, num_train_examples=[4], num_runs=2)
    outputs = root / "outputs"
    k = 0
    for method, lrs in (("tok", [1e-3]), ("act", [1e-3, 1e-4]), ("ia3-tok", [1e-2])):
        for lr in lrs:
            for run in (0, 1):
                k += 1
                base = micro_model("llama", tok)  # seeds torch itself: draw the adapter's init after it
                torch.manual_seed(k)
                if method.startswith("ia3"):
                    pc = IA3Config(
                        target_modules=["q_proj", "k_proj", "o_proj"],
                        feedforward_modules=["o_proj"],
                        init_ia3_weights=False,
                    )
                else:
                    pc = LoraConfig(
                        r=2, lora_alpha=2, target_modules=["q_proj", "k_proj", "o_proj"], init_lora_weights=False
                    )
                pm = get_peft_model(base, pc)
                d = outputs / method / "syn_sst2" / f"micro_{method}_{lr}_{run}"
                pm.save_pretrained(d)
                cfg = dict(
                    training_method=method,
                    dataset="syn_sst2",
                    model_id=str(model_dir),
                    lora_type="qko",
                    lora_r=2,
                    lora_alpha=2,
                    ia3_type="qko",
                    num_virtual_tokens=20,
                    num_generated_tokens=1,
                    num_train_examples=4,
                    lr=lr,
                    run_idx=run,
                    label_type=None if method == "act" else "ground_truth",
                    ce_loss_weight=None,
                )
                (d / "config.json").write_text(json.dumps(cfg))
                (d / "COMPLETE").write_text("")
    return {"root": root, "model_dir": model_dir, "data": data, "outputs": outputs}


def run_cli(argv):
    """``actlab ia2 <argv>`` through the evaluation verbs (one-line errors → exit 2, like cli/main.py)."""
    import sys

    from actlab.cli.ia2_eval import add_verbs
    from actlab.cli.main import OneLineParser
    from actlab.core.errors import ActlabError

    p = OneLineParser(prog="actlab ia2")
    add_verbs(p.add_subparsers(dest="verb", parser_class=OneLineParser))
    try:
        args = p.parse_args(argv)
    except SystemExit as e:
        return int(e.code)
    try:
        return int(args.func(args) or 0)
    except ActlabError as e:
        sys.stderr.write(f"actlab: error: {e}\n")
        return 2
