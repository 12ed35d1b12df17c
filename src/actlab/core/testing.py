"""Micro random models and a micro tokenizer, built offline in well under a second.

Used by the test suite (see ``tests/conftest.py``) and handy for users' own tests. Nothing here downloads.

>>> tok = micro_tokenizer()
>>> model = micro_model("llama", tok)
"""

from __future__ import annotations

import torch

WORDS = (
    "the a an is are was of to and in on at for with it this that one two three four five six seven eight nine ten "
    "zero red blue green cat dog fox bird tree house car book apple banana orange monday friday sunday good bad "
    "yes no true false question answer text label choices passage human assistant paris rome berlin tokyo alice bob "
    "carol dave eve frank plus minus equals how many what where who has have more less left right up down"
).split()
SPECIALS = ["<pad>", "<unk>", "<s>", "</s>"]
PUNCT = list(".,:;?!#()[]{}+-*/=\n")


def micro_tokenizer(padding_side: str = "left", extra_words: tuple[str, ...] = ()):
    """A word-level tokenizer (words, digits and punctuation split) with BOS added, saved-loadable with AutoTokenizer."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab: dict[str, int] = {}
    for w in [*SPECIALS, *PUNCT, *list("0123456789"), *WORDS, *extra_words]:
        vocab.setdefault(w, len(vocab))
    raw = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation(), pre_tokenizers.Digits(individual_digits=True)]
    )
    raw.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A $B",
                                                       special_tokens=[("<s>", vocab["<s>"])])
    from tokenizers import decoders

    raw.decoder = decoders.WordPiece(prefix="##", cleanup=False)  # joins words with spaces
    tok = PreTrainedTokenizerFast(tokenizer_object=raw, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                  pad_token="<pad>", padding_side=padding_side, model_max_length=512)
    return tok


def micro_config(arch: str, tok, *, hidden: int = 32, layers: int = 2, heads: int = 4, kv_heads: int = 2,
                 ffn: int = 64, max_pos: int = 256):
    """A tiny random config for ``arch`` in {llama, qwen2, qwen3, mistral, gemma, gpt2}."""
    from transformers import AutoConfig

    common = dict(vocab_size=len(tok), pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                  eos_token_id=tok.eos_token_id)
    if arch == "gpt2":
        return AutoConfig.for_model("gpt2", n_embd=hidden, n_layer=layers, n_head=heads, n_inner=ffn,
                                    n_positions=max_pos, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, **common)
    kw = dict(hidden_size=hidden, intermediate_size=ffn, num_hidden_layers=layers, num_attention_heads=heads,
              num_key_value_heads=kv_heads, max_position_embeddings=max_pos, tie_word_embeddings=False, **common)
    if arch in ("qwen3", "gemma"):
        kw["head_dim"] = hidden // heads  # Qwen3Config defaults to head_dim=128
    if arch == "gemma":
        kw["hidden_activation"] = "gelu_pytorch_tanh"
    return AutoConfig.for_model(arch, **kw)


def micro_model(arch: str = "llama", tok=None, seed: int = 0, **kw):
    """A random micro causal LM in eval mode (fp32, eager-free default attention)."""
    from transformers import AutoModelForCausalLM

    tok = tok if tok is not None else micro_tokenizer()
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(micro_config(arch, tok, **kw))
    # random init of a micro model gives near-uniform logits; widen them so argmax tests are meaningful
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2:
                p.mul_(4.0)
    model.eval()
    return model
