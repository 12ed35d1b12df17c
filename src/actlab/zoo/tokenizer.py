"""The zoo's tokenizer: a byte-level BPE trained offline with ``tokenizers`` on a sample of the synthetic world.

Byte-level, so arbitrary text (any script, emoji, code) encodes without ``<unk>`` and decodes back exactly; digits
are split one per token, so numbers of any size stay learnable for the arithmetic family. Every zoo model shares
this tokenizer *family*: it is a pure function of :class:`TokenizerSpec` (the sample is drawn from all document
generators with a fixed seed), so two models built with the same spec have identical vocabularies.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass

SPECIAL_TOKENS = ("<pad>", "<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>")
#: Ordinary (non-special) added tokens for the ICL prompt scaffold ``Text:{text}\nLabel:{label}\n\n...``: one token
#: each, so an example costs ~6 tokens instead of ~10 and the class key word sits right before ``\nLabel:``.
#: They are matched before byte-level pre-tokenization, decode to themselves, and never give ``<unk>``.
SCAFFOLD_TOKENS = ("Text:", "\nLabel:", "\n\n")


def key_label_tokens() -> tuple[str, ...]:
    """One added token per class key word fused with the label scaffold: ``" great\nLabel:"``.

    Measured here (copy task, 4L h128, batch 128): with the label right after the word, 4-demo accuracy reached 0.70
    within 200 steps; with a constant separator token between word and label it stayed at the "any demo label"
    level (0.22, chance 0.25) after 600 steps, and the zoo's tiny plateaued the same way. Fusing the key word with
    ``\nLabel:`` makes the query's last token name its class, so the plain induction head (copy what followed the
    previous occurrence of the current token) does in-context learning on ``Text:{text}\nLabel:`` prompts whose
    text ends in a key word (the synthetic ICL texts, ``syn_sst2``, ``syn_agnews``).
    """
    from actlab.data.world import KEY_WORDS

    return tuple(f" {w}\nLabel:" for w in KEY_WORDS)


def label_scaffold_ids(tok) -> list[int]:
    """Ids of the tokens after which a label follows (``\nLabel:`` and the fused key-word tokens)."""
    ids = [tok.convert_tokens_to_ids(t) for t in ("\nLabel:", *key_label_tokens())]
    return [i for i in ids if i is not None and i != tok.unk_token_id]


CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@dataclass(frozen=True)
class TokenizerSpec:
    vocab_size: int = 2048
    n_docs: int = 4000  # documents per generator in the training sample
    seed: int = 1234
    model_max_length: int = 512

    def to_dict(self) -> dict:
        return asdict(self)


def training_sample(spec: TokenizerSpec) -> list[str]:
    """The tokenizer's training text: ``n_docs`` documents from every generator of the world (deterministic)."""
    from actlab.data.world import DOC_GENERATORS, FILLER_WORDS, KEY_WORDS, LABEL_WORDS

    docs: list[str] = []
    for name in sorted(DOC_GENERATORS):
        rng = random.Random(f"tokenizer:{spec.seed}:{name}")
        docs.extend(DOC_GENERATORS[name](rng) for _ in range(spec.n_docs))
    # every label word in both positions it can take (after ':' and after a space), so each gets its own token
    docs.extend(f"Label:{w} {w}" for w in LABEL_WORDS for _ in range(50))
    # and every classification word with its leading space (the position it always takes in a text)
    docs.extend(" ".join(f" {w}" for w in KEY_WORDS + FILLER_WORDS) for _ in range(100))
    return docs


def train_tokenizer(spec: TokenizerSpec = TokenizerSpec()):
    """Train the byte-level BPE and wrap it as a transformers fast tokenizer (pad token, left padding, chat template)."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    raw = Tokenizer(models.BPE(unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    raw.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=spec.vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    raw.train_from_iterator(training_sample(spec), trainer)
    raw.add_tokens([AddedToken(t, normalized=False, special=False) for t in (*SCAFFOLD_TOKENS, *key_label_tokens())])
    bos = raw.token_to_id("<s>")
    raw.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A $B", special_tokens=[("<s>", bos)]
    )
    tok = PreTrainedTokenizerFast(
        tokenizer_object=raw,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        padding_side="left",
        model_max_length=spec.model_max_length,
    )
    tok.chat_template = CHAT_TEMPLATE
    return tok
