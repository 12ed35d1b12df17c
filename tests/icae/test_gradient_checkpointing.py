"""``gradient_checkpointing``: the HF model's own checkpointing is on, layers are recomputed, gradients unchanged."""

import torch

from actlab.core.gradckpt import checkpointing_on, enable_gradient_checkpointing
from actlab.icae.model import SimpleLLM


def _grads(model, loss_fn, gc: bool):
    base = model.base() if hasattr(model, "base") else model.model
    if gc:
        enable_gradient_checkpointing(base, frozen_base=True)
    assert checkpointing_on(base) is gc and base.model.layers[0].gradient_checkpointing is gc
    layer = base.model.layers[0].self_attn  # a submodule: its hook also fires in a recompute
    calls = []
    h = layer.register_forward_hook(lambda *a: calls.append(1))
    model.train()
    for p in model.trainable_parameters():
        p.grad = None
    loss_fn(model).backward()
    h.remove()
    return {i: p.grad.clone() for i, p in enumerate(model.trainable_parameters())}, len(calls)


def _icae_loss(icae):
    ids = icae.tokenize_contexts(["the cat is red and the dog is blue . alice has a book in paris", "bob is in rome"])
    tgt = icae.tokenize_contexts(["red", "rome"])
    return icae.loss(icae.decoder_rows(icae.compress(ids), "FT", [[5, 6], [7]], tgt))


def test_icae_checkpointing_on_and_gradients_equal(make_icae):
    plain, n_plain = _grads(make_icae(lora_dropout=0.0), _icae_loss, gc=False)
    ckpt, n_ckpt = _grads(make_icae(lora_dropout=0.0), _icae_loss, gc=True)
    assert n_ckpt == n_plain + 1  # the encoder's layers ran again in the backward pass; the decoder's are stored
    assert plain.keys() == ckpt.keys() and any(float(g.abs().max()) > 0 for g in plain.values())
    for k in plain:
        assert torch.allclose(plain[k], ckpt[k], rtol=1e-4, atol=1e-6), k


def test_llm_lora_checkpointing_on_and_gradients_equal(micro_tok, tmp_path):
    from actlab.core.testing import micro_model
    from actlab.icae.config import ICAEConfig

    def make():
        llm = SimpleLLM(
            micro_model("llama", micro_tok, seed=0),
            micro_tok,
            ICAEConfig(model_type="llm", lora_r=4, lora_dropout=0.0, max_seq_len=64),
        ).add_lora()
        with torch.no_grad():  # lora_B starts at 0: perturb so that lora_A gets a gradient too
            g = torch.Generator().manual_seed(1)
            for n, p in llm.model.named_parameters():
                if "lora_B" in n:
                    p.copy_(torch.randn(p.shape, generator=g) * 0.5)
        return llm

    def loss(llm):
        return llm.loss(llm.rows(["bob is in rome"], ["\nQuestion: where ?\nAnswer:"], [[5, 6]]))

    plain, n_plain = _grads(make(), loss, gc=False)
    ckpt, n_ckpt = _grads(make(), loss, gc=True)
    assert n_ckpt == 2 * n_plain
    for k in plain:
        assert torch.allclose(plain[k], ckpt[k], rtol=1e-4, atol=1e-6), k


def test_finetune_flag_turns_it_on(make_icae, tmp_path):
    from actlab.icae import trainer
    from tests.icae.test_pipeline import _cfg

    icae = make_icae(perturb=False, fixed_mem_size=8, mean_compression_rate=4)
    trainer.finetune(_cfg(tmp_path, task="qa", max_steps=1, gradient_checkpointing=True), icae)
    assert checkpointing_on(icae.base())
    assert (tmp_path / "run" / "finetune_qa" / "COMPLETE").exists()
