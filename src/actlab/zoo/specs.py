"""Zoo entries: a corpus spec + a model config + a training config + a seed → a model.

Add an entry by adding a :class:`ZooSpec` to :data:`ZOO` (see docs/zoo.md, "Adding a zoo entry").
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from actlab.zoo.tokenizer import TokenizerSpec


@dataclass(frozen=True)
class CorpusSpec:
    """A mixture of world document generators (:data:`actlab.data.world.DOC_GENERATORS`) with weights.

    Optionally a curriculum: the first ``warmup_steps`` training steps draw ``warmup_batch`` documents each from
    ``warmup_mix`` instead (the zoo's ``tiny`` learns its induction circuit there on the dense copy task first; see
    docs/zoo.md), the remaining steps draw ``TrainSpec.batch_size`` documents from ``mix``.
    """

    mix: dict[str, float]
    max_len: int = 192  # tokens per training row (documents are truncated; they are shorter anyway)
    warmup_mix: dict[str, float] | None = None
    warmup_steps: int = 0
    warmup_batch: int = 0

    def phase(self, step: int, batch_size: int) -> tuple[str, dict[str, float], int, int]:
        """(phase name, mix, documents per batch, step within the phase) of training step ``step``."""
        if self.warmup_mix and step < self.warmup_steps:
            return "warmup", self.warmup_mix, self.warmup_batch, step
        return "main", self.mix, batch_size, step - (self.warmup_steps if self.warmup_mix else 0)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ModelSpec:
    """A LlamaConfig's size fields (vocab/special ids come from the tokenizer)."""

    hidden_size: int = 128
    intermediate_size: int = 256
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    max_position_embeddings: int = 512
    tie_word_embeddings: bool = True

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class TrainSpec:
    steps: int = 2400  # all steps, the corpus's warm-up steps included
    batch_size: int = 24
    lr: float = 1e-3  # feasibility §5: 3e-3 stalled ICL
    warmup: int = 100  # linear lr warm-up; then constant through the corpus warm-up, then cosine to 5 %
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    label_loss_weight: float = 3.0  # weight of the token after ``\nLabel:`` in the (otherwise uniform) LM loss
    threads: int = 2  # torch threads for the build; $ACTLAB_ZOO_THREADS overrides (not part of the model's identity)
    ckpt_every: int = 200
    eval_every: int = 600  # quick ICL check (60 tasks, k=0/4) logged in the manifest; 0: only the final eval
    eval_tasks: int = 200  # held-out tasks per demo count in the final (manifest) evaluation

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ZooSpec:
    name: str
    description: str
    corpus: CorpusSpec
    model: ModelSpec = field(default_factory=ModelSpec)
    train: TrainSpec = field(default_factory=TrainSpec)
    tokenizer: TokenizerSpec = field(default_factory=TokenizerSpec)
    seed: int = 0

    def identity(self) -> dict:
        """What makes two builds the same model: the spec without the thread count (recorded in the manifest)."""
        d = self.to_dict()
        d["train"] = {k: v for k, v in d["train"].items() if k != "threads"}
        return d

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "description": self.description,
            "seed": self.seed,
            "corpus": self.corpus.to_dict(),
            "model": self.model.to_dict(),
            "train": self.train.to_dict(),
            "tokenizer": self.tokenizer.to_dict(),
        }


#: Main phase of the ICL models: ICL episodes first, with enough world text for the cross-model games (facts,
#: Countries, Tip Sheets), passages, dialogs, arithmetic and squad. After the copy warm-up the ICL circuit transfers
#: to the formatted episodes within a few hundred steps, so ICL needs no more than ~60 % of the documents.
TINY_MIX = {
    "icl": 0.6, "facts": 0.06, "countries": 0.08, "tipsheets": 0.08, "passages": 0.06, "dialogs": 0.06,
    "arithmetic": 0.03, "squad": 0.03,
}  # fmt: skip
#: Every text family; ICL kept as a minority so the others get the budget.
WORLD_MIX = {
    "icl": 0.2, "facts": 0.08, "countries": 0.1, "tipsheets": 0.1, "passages": 0.12, "dialogs": 0.14,
    "arithmetic": 0.14, "squad": 0.12,
}  # fmt: skip

#: Corpus of ``tiny-b``, the cross-model partner: the world text the Lewis games need (the games themselves, the
#: landmark → country facts) with passages and dialogs (the texts xmodel extracts activations from, IAV's syn_hh),
#: no ICL and no copy warm-up. At 3 layers / h96 the ICL curriculum did not take (k=0/4 = 0.395/0.395) and left B
#: unable to answer the Countries game even given both prompts (skyline 9 %); with this mix the skyline is 100 % on
#: Countries and Tip Sheets (docs/zoo.md, "tiny-b").
PARTNER_MIX = {
    "countries": 0.25, "tipsheets": 0.3, "facts": 0.15, "passages": 0.15, "dialogs": 0.1, "squad": 0.05,
}  # fmt: skip

#: Curriculum of the ICL models: the induction circuit forms on the dense copy task (batch 128 of 17-token episodes)
#: before the formatted episodes and world text; without it, it did not form within the build budget.
INDUCTION_WARMUP = {"warmup_mix": {"icl_copy": 1.0}, "warmup_steps": 700, "warmup_batch": 128}
ICL_TRAIN = TrainSpec(steps=700 + 1800)

#: Corpus of ``tiny-copy``, the decoder that copies what it cannot recall: passage repeats (``p\np``, and ``p<s>p``
#: with the second copy at the first one's position ids, ICAE's EPL layout) with freshly drawn attributes and
#: landmarks, fresh-attribute passages and SQuAD-like questions (answerable only from the context), and some world
#: text. No fixed per-person profile is ever stated, so nothing about a person can be recalled instead of read.
COPY_MIX = {
    "passage_repeat": 0.2, "passage_repeat_restart": 0.3, "fresh_passages": 0.1, "fresh_squad": 0.15,
    "facts": 0.05, "dialogs": 0.05, "countries": 0.05, "word_repeat_restart": 0.05, "word_repeat": 0.05,
}  # fmt: skip
COPY_STEPS = 300 + 700

ZOO: dict[str, ZooSpec] = {
    "tiny": ZooSpec(
        name="tiny",
        description="default: ICL-capable tiny Llama (4L, h128): copy-task warm-up, then remapped-label ICL episodes "
        "+ world text",
        corpus=CorpusSpec(TINY_MIX, **INDUCTION_WARMUP),
        train=ICL_TRAIN,
        seed=0,
    ),
    "tiny-b": ZooSpec(
        name="tiny-b",
        description="cross-model partner of tiny: same tokenizer, other size (3L, h96) and seed; world text only "
        "(Lewis games, facts, passages, dialogs), no ICL",
        corpus=CorpusSpec(PARTNER_MIX),
        # no ICL checks during training (tiny-b is not an ICL model); 1 thread: the same weights as with 2 (checked),
        # and 220 s instead of 698 s on the shared 2-core machine (docs/zoo.md, "tiny-b")
        train=TrainSpec(steps=2400, eval_every=0, threads=1),
        model=ModelSpec(
            hidden_size=96, intermediate_size=192, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2
        ),  # fmt: skip
        seed=1,
    ),
    "tiny-world": ZooSpec(
        name="tiny-world",
        description="text families (gsm8k-, squad-, hh-like, passages, Lewis games) for IAV/ICAE/xmodel; same tokenizer",
        corpus=CorpusSpec(WORLD_MIX),
        seed=2,
    ),
    "tiny-copy": ZooSpec(
        name="tiny-copy",
        description="copy-capable decoder for ICAE (4L, h128): copy warm-up, then passage repeats with fresh "
        "attributes (also at the original's position ids); gated by a copy probe on unseen people",
        # a short copy warm-up (the induction circuit), then the repeat mix; label weight 1 (no ICL labels here;
        # it also keeps the corpus's restarted position ids in the loss call); ICL is not checked
        corpus=CorpusSpec(
            COPY_MIX,
            max_len=256,
            warmup_mix={"word_repeat": 0.5, "word_repeat_restart": 0.5},
            warmup_steps=300,
            warmup_batch=64,
        ),
        train=TrainSpec(steps=COPY_STEPS, eval_every=0, eval_tasks=40, label_loss_weight=1.0, threads=1),
        seed=3,
    ),
}
ZOO_NAMES: tuple[str, ...] = tuple(ZOO)
DEFAULT = "tiny"
