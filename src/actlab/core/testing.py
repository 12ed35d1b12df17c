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
    raw.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A $B", special_tokens=[("<s>", vocab["<s>"])]
    )
    from tokenizers import decoders

    raw.decoder = decoders.WordPiece(prefix="##", cleanup=False)  # joins words with spaces
    tok = PreTrainedTokenizerFast(
        tokenizer_object=raw,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        padding_side=padding_side,
        model_max_length=512,
    )
    return tok


# name -> (model_type, extra config kwargs): every architecture of the test matrix (``tests/arch``)
MATRIX: dict[str, tuple[str, dict]] = {
    "llama": ("llama", {}),
    "qwen2": ("qwen2", {}),
    "qwen3": ("qwen3", {}),
    "mistral": ("mistral", {}),
    "gemma": ("gemma", {}),
    # the Gemmas' head_dim × heads is not their hidden size (as Gemma-2 2B: 8 × 256 ≠ 2304)
    "gemma2": (
        "gemma2",
        dict(
            final_logit_softcapping=5.0,
            attn_logit_softcapping=20.0,
            query_pre_attn_scalar=16,
            sliding_window=8,
            head_dim=16,
        ),
    ),
    "gemma3_text": ("gemma3_text", dict(query_pre_attn_scalar=16, sliding_window=8, head_dim=16)),
    "phi3": ("phi3", {}),
    "phi": ("phi", {}),
    "granite": (
        "granite",
        dict(embedding_multiplier=2.0, logits_scaling=2.0, residual_multiplier=0.5, attention_multiplier=0.25),
    ),
    "gpt2": ("gpt2", {}),
    "gpt_neox": ("gpt_neox", {}),
    "gptj": ("gptj", {}),
    "opt": ("opt", {}),
    "falcon": ("falcon", dict(multi_query=True, new_decoder_architecture=False, parallel_attn=True)),
    "falcon_new": ("falcon", dict(new_decoder_architecture=True, multi_query=False, parallel_attn=True)),
    "stablelm": ("stablelm", {}),
    "olmo2": ("olmo2", {}),
    "cohere": ("cohere", dict(logit_scale=4.0)),
    "mixtral": ("mixtral", dict(num_local_experts=4, num_experts_per_tok=2)),
    "qwen3_moe": (
        "qwen3_moe",
        dict(
            num_experts=4,
            num_local_experts=4,
            num_experts_per_tok=2,
            moe_intermediate_size=16,
            norm_topk_prob=True,
            head_dim=16,
        ),
    ),
    "qwen2_moe": (
        "qwen2_moe",
        dict(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=16, shared_expert_intermediate_size=32),
    ),
    "bloom": ("bloom", {}),
    "gpt_bigcode": ("gpt_bigcode", dict(multi_query=True)),
    "starcoder2": ("starcoder2", {}),
}
# OPT's input embeddings are narrower than its hidden size (``word_embed_proj_dim``), as in opt-350m
OPT_EMBED = 32
OPT_HIDDEN = 48


def micro_config(
    arch: str,
    tok,
    *,
    hidden: int = 32,
    layers: int = 2,
    heads: int = 4,
    kv_heads: int = 2,
    ffn: int = 64,
    max_pos: int = 256,
):
    """A tiny random config for ``arch``: a key of :data:`MATRIX` (``falcon`` = multi-query, ``falcon_new`` = the
    new decoder layout with grouped KV heads; ``opt`` is ``OPT_HIDDEN`` wide with ``OPT_EMBED``-wide embeddings)."""
    from transformers import AutoConfig

    if arch not in MATRIX:
        from actlab.core.errors import unknown_choice

        raise unknown_choice("micro architecture", arch, tuple(MATRIX))
    mt, extra = MATRIX[arch]
    common = dict(
        vocab_size=len(tok),
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    if arch == "gpt2":
        return AutoConfig.for_model(
            "gpt2",
            n_embd=hidden,
            n_layer=layers,
            n_head=heads,
            n_inner=ffn,
            n_positions=max_pos,
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
            **common,
        )
    if mt == "gptj":
        return AutoConfig.for_model(
            "gptj",
            n_embd=hidden,
            n_layer=layers,
            n_head=heads,
            n_inner=ffn,
            n_positions=max_pos,
            rotary_dim=hidden // heads // 2,
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
            tie_word_embeddings=False,
            **common,
        )
    if mt == "opt":
        return AutoConfig.for_model(
            "opt",
            hidden_size=OPT_HIDDEN,
            word_embed_proj_dim=OPT_EMBED,
            ffn_dim=ffn,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            max_position_embeddings=max_pos,
            dropout=0.0,
            attention_dropout=0.0,
            tie_word_embeddings=True,
            **common,
        )
    if mt in ("bloom", "gpt_bigcode"):
        names = (
            dict(hidden_size=hidden, n_layer=layers, n_head=heads)
            if mt == "bloom"
            else dict(
                n_embd=hidden,
                n_layer=layers,
                n_head=heads,
                n_inner=ffn,
                n_positions=max_pos,
                resid_pdrop=0.0,
                embd_pdrop=0.0,
                attn_pdrop=0.0,
            )
        )
        return AutoConfig.for_model(mt, tie_word_embeddings=False, **names, **extra, **common)
    if mt == "falcon":
        return AutoConfig.for_model(
            "falcon",
            hidden_size=hidden,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            num_kv_heads=kv_heads,
            ffn_hidden_size=ffn,
            max_position_embeddings=max_pos,
            tie_word_embeddings=False,
            **extra,
            **common,
        )
    kw = dict(
        hidden_size=hidden,
        intermediate_size=ffn,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=max_pos,
        tie_word_embeddings=False,
        **common,
    )
    if mt == "gpt_neox":
        kw.pop("num_key_value_heads")
        kw.update(hidden_dropout=0.0, attention_dropout=0.0)
    if mt in ("qwen3", "gemma", "gemma2", "gemma3_text", "qwen3_moe", "mixtral"):
        kw["head_dim"] = hidden // heads  # Qwen3Config defaults to head_dim=128, the Gemmas to 256
    if mt == "gemma":
        kw["hidden_activation"] = "gelu_pytorch_tanh"
    if mt == "cohere":
        kw["tie_word_embeddings"] = True  # as Command-R ships
    return AutoConfig.for_model(mt, **{**kw, **extra})


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
