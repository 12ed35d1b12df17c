"""The dataset registry: every dataset of the IA2 seeds, the zoo's synthetic sets, and the hub sets other families use.

A :class:`DatasetSpec` says where a dataset comes from (hub path, config, splits), how a raw row in the hub's own
column schema becomes an example (prompt, answer, label, gold), and how answers are parsed. Families never format
prompts themselves: they read the pools that :func:`actlab.data.prepare.prepare` writes, or call
:meth:`DatasetSpec.format_example` on rows.

An example is ``{"prompt": str, "answer": str, "label": int | None, "gold": str | None}``:

* ``prompt`` ends in ``Label:`` / ``Answer:`` with no trailing space; ``answer`` is appended to it with no space;
* ``label`` is the label index for single-token tasks (``answer == labels[label]``), else None;
* ``gold`` is what a parsed prediction must equal: the answer for single-token tasks, ``parse(answer)`` otherwise.

Any single-token dataset ``X`` also exists as ``X_remap`` (``--label_template remap``): label ``i`` is written as the
``i``-th word of :data:`REMAP_WORDS` (0 apple, 1 Friday, 2 banana, 3 Saturday, 4 Thursday, 5 Sunday, 6 Wednesday,
7 Monday), drawn as the official code draws them (``np.random.seed(42)``, rejection sampling).

Sources: ``aamixsh/ia2`` ``scripts/prepare_data.py`` and ``utils.py`` (read, not copied).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from actlab.core.errors import ActlabError, unknown_choice
from actlab.data import parsers

SEED = 42  # the official shuffle / option-shuffle / remap seed
REMAP_VOCAB = ("Monday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday", "apple", "banana", "orange")
HMATH_SUBSETS = (
    "algebra",
    "prealgebra",
    "precalculus",
    "intermediate_algebra",
    "geometry",
    "number_theory",
    "counting_and_probability",
)
SINGLE, MULTI = "single_token", "multi_token"

Row = dict[str, Any]
Loader = Callable[[str], Any]  # split name -> datasets.Dataset (or list of rows)


def remap_words(n: int, rs: np.random.RandomState | None = None) -> list[str]:
    """The official remap draw: for labels 0..n-1 in order, draw words from REMAP_VOCAB (rejecting repeats).

    With ``rs=None`` a fresh ``RandomState(42)`` is used; passing one advances it (sciq does that before shuffling
    its options, so the option order depends on whether remapping is on, exactly as upstream).
    """
    if n > len(REMAP_VOCAB):
        raise ActlabError(f"cannot remap {n} labels; the remap vocabulary has {len(REMAP_VOCAB)} words")
    rs = np.random.RandomState(SEED) if rs is None else rs
    used: list[str] = []
    for _ in range(n):
        while True:
            w = str(rs.choice(REMAP_VOCAB))
            if w not in used:
                used.append(w)
                break
    return used


# ----------------------------------------------------------------------------------------------------------- spec
@dataclass(frozen=True, eq=False)
class DatasetSpec:
    """One dataset: source, prompt format, label set, parser.

    Args:
        name: registry name (also the directory under ``data/``).
        hub_path / hub_config: ``datasets.load_dataset(hub_path, hub_config, split=...)``; None for synthetic sets.
        splits: (train-pool split, eval-pool split) on the hub; the train split is None for eval-only sets, and some
            sets cut both pools from one split (finsen, strategytf: the last ``num_val_samples`` rows are the eval pool).
        task_type: ``"single_token"`` (answer is one label word) or ``"multi_token"`` (generated, then parsed).
        labels: label strings in label-index order (single-token tasks), else None.
        columns: the hub columns the formatter reads (fixtures in the tests are built with exactly these).
        max_new_tokens / stop_strings: generation settings for evaluation (1 for single-token tasks).
        eval_only: only an eval pool is prepared (poems, bbcnews).
        source: ``"hub"`` or ``"synthetic"`` (rows from ``actlab.data.world.synthetic_rows``).
        base: the dataset this one derives from (``sst2`` for ``sst2_remap``), else None.
        supported: False for datasets registered honestly but not preparable (cmath); ``notes`` says why.
    """

    name: str
    hub_path: str | None
    hub_config: str | None
    splits: tuple[str | None, str]
    task_type: str
    labels: list[str] | None
    columns: tuple[str, ...]
    prompt_fn: Callable[[Row, DatasetSpec], str] = field(repr=False)
    answer_fn: Callable[[Row, DatasetSpec], str] | None = field(default=None, repr=False)
    label_fn: Callable[[Row], int] | None = field(default=None, repr=False)
    parser: Callable[[str], str | None] | None = field(default=None, repr=False)
    pipeline: Callable[..., tuple[list[Row], list[Row]]] | None = field(default=None, repr=False)
    preprocess: Callable[[list[Row], list[Row], DatasetSpec], None] | None = field(default=None, repr=False)
    max_new_tokens: int = 1
    stop_strings: tuple[str, ...] = ("\n\n",)
    eval_only: bool = False
    source: str = "hub"
    base: str | None = None
    remap: bool = False
    supports_remap: bool = False
    keep_row: bool = False
    supported: bool = True
    subset: str | None = None  # cmath: the camel-ai/math topic the pipeline keeps (None: every topic)
    notes: str = ""

    # -- formatting ------------------------------------------------------------------------------------------------
    def format_prompt(self, row: Row) -> str:
        """The query text, ending in ``Label:`` / ``Answer:`` (no trailing space)."""
        return self.prompt_fn(row, self)

    def label_of(self, row: Row) -> int | None:
        """The label index of a row (single-token tasks), else None."""
        return None if self.label_fn is None else int(self.label_fn(row))

    def format_answer(self, row: Row) -> str:
        """The target text, appended to the prompt with no space: a label word, or a CoT ending in the answer."""
        if self.task_type == SINGLE:
            assert self.labels is not None
            return self.labels[self.label_of(row)]
        assert self.answer_fn is not None
        return self.answer_fn(row, self)

    def parse(self, text: str | None) -> str | None:
        """Parse a generated (or gold) answer: the dataset's parser for multi-token tasks; for the rest, strip."""
        if self.parser is None:
            return parsers.parse_strip(text)
        return self.parser(text)

    def format_example(self, row: Row) -> dict[str, Any]:
        """``{"prompt", "answer", "label", "gold"}`` (+ ``"row"``, the raw fields, for sets families render themselves)."""
        answer = self.format_answer(row)
        ex: dict[str, Any] = {
            "prompt": self.format_prompt(row),
            "answer": answer,
            "label": self.label_of(row) if self.task_type == SINGLE else None,
            "gold": answer if self.task_type == SINGLE else self.parse(answer),
        }
        if self.keep_row:
            ex["row"] = {k: v for k, v in row.items() if not k.startswith("_")}
        return ex

    def with_remap(self) -> DatasetSpec:
        """This dataset with remapped label words (``<name>_remap``)."""
        if not self.supports_remap or self.labels is None:
            raise ActlabError(
                f"label_template 'remap' is not supported for dataset {self.name!r} "
                f"(only single-token classification sets: {', '.join(remappable())})"
            )
        if self.remap:
            return self
        return dataclasses.replace(
            self, name=f"{self.name}_remap", labels=remap_words(len(self.labels)), base=self.name, remap=True
        )

    def load(
        self, num_train_samples: int = 2000, num_val_samples: int = 500, rows: Any = None
    ) -> tuple[list[Row], list[Row]]:
        """The raw (train-pool, eval-pool) rows: hub (``datasets.load_dataset``), synthetic, or ``rows`` given in
        the hub's column schema; shuffled, filtered and cut as upstream, not yet formatted."""
        from actlab.data.prepare import pool_rows

        return pool_rows(self, num_train_samples, num_val_samples, rows)

    @property
    def num_labels(self) -> int | None:
        return None if self.labels is None else len(self.labels)


def build_icl_prompt(demos: Sequence[dict], query: dict) -> str:
    """``"\\n\\n".join(demo prompt + answer) + "\\n\\n" + query prompt`` (just the query prompt without demos)."""
    if not demos:
        return query["prompt"]
    return "\n\n".join(d["prompt"] + d["answer"] for d in demos) + "\n\n" + query["prompt"]


# ---------------------------------------------------------------------------------------------- pipeline helpers
def as_dataset(rows: Any):
    """A ``datasets.Dataset`` from a Dataset or a list of dict rows (fixtures, synthetic rows)."""
    import datasets

    if isinstance(rows, datasets.Dataset):
        return rows
    return datasets.Dataset.from_list(list(rows))


def _take(ds, n: int | None) -> list[Row]:
    n = len(ds) if n is None else min(n, len(ds))
    return ds.select(range(n)).to_list()


def pipe_standard(spec: DatasetSpec, load: Loader, n_train: int, n_val: int):
    """train split / eval split, each shuffled with seed 42 (HF ``Dataset.shuffle``), first n rows of each."""
    train_split, val_split = spec.splits
    train = [] if train_split is None else _take(as_dataset(load(train_split)).shuffle(seed=SEED), n_train)
    val = _take(as_dataset(load(val_split)).shuffle(seed=SEED), n_val)
    return train, val


def pipe_finsen(spec: DatasetSpec, load: Loader, n_train: int, n_val: int):
    """One split: shuffle (42), keep labels negative(0)/positive(2→1), the last ``n_val`` rows are the eval pool."""
    ds = as_dataset(load(spec.splits[1])).shuffle(seed=SEED)
    rows = [dict(r, label=1 if r["label"] == 2 else r["label"]) for r in ds.to_list() if r["label"] in (0, 2)]
    split = len(rows) - n_val
    return rows[: max(split, 0)][:n_train], rows[max(split, 0) :][:n_val]


def pipe_strategytf(spec: DatasetSpec, load: Loader, n_train: int, n_val: int):
    """One split: shuffle (42), the last ``n_val`` rows are the eval pool; each part is shuffled (42) again."""
    ds = as_dataset(load(spec.splits[1])).shuffle(seed=SEED)
    split = max(len(ds) - n_val, 0)
    train = ds.select(range(split)).shuffle(seed=SEED)
    val = ds.select(range(split, len(ds))).shuffle(seed=SEED)
    return _take(train, n_train), _take(val, n_val)


def pipe_poems(spec: DatasetSpec, load: Loader, n_train: int, n_val: int):
    """Eval only: the hub *train* split, labels 0/1 only (negative/positive), shuffled (42)."""
    ds = as_dataset(load(spec.splits[1]))
    keep = [i for i, lab in enumerate(ds["label"]) if lab in (0, 1)]
    return [], _take(ds.select(keep).shuffle(seed=SEED), n_val)


def pipe_cmath(spec: DatasetSpec, load: Loader, n_train: int, n_val: int):
    """One split: the rows of topic ``spec.subset`` (all topics if None), shuffled (42); the last ``n_val`` rows are
    the eval pool, the first ``n_train`` of the rest the train pool."""
    rows = parsers.cmath_topic_rows(as_dataset(load(spec.splits[1])).to_list(), spec.subset)
    rows = as_dataset(rows).shuffle(seed=SEED).to_list() if rows else []
    split = max(len(rows) - n_val, 0)
    return rows[:split][:n_train], rows[split:]


def pipe_synthetic(spec: DatasetSpec, load: Loader, n_train: int, n_val: int):
    """Synthetic rows (already random): shuffled (42) like a hub set, first n rows."""
    return pipe_standard(spec, load, n_train, n_val)


# ----------------------------------------------------------------------------------------------------- formatters
def _text_label(col: str):
    return lambda row, spec: f"Text:{row[col]}\nLabel:"


def _question_answer(col: str = "question"):
    return lambda row, spec: f"Question:{row[col]}\nAnswer:"


def _field(col: str):
    return lambda row, spec: str(row[col])


def _choices_prompt(question: str, options: Sequence[str], spec: DatasetSpec) -> str:
    """``Question:{q}\\nChoices:\\n[tok]opt\\n...\\n\\nAnswer:`` — the blank line before ``Answer:`` is upstream's."""
    toks = spec.labels or [str(i) for i in range(len(options))]
    choices = "".join(f"[{toks[i]}]{opt}\n" for i, opt in enumerate(options))
    return f"Question:{question}\nChoices:\n{choices}\nAnswer:"


def bbc_cut(text: str, n: int = 256) -> str:
    """Upstream's cut: the first 256 characters, then the last (possibly partial) word dropped — always."""
    return " ".join(text[:n].split(" ")[:-1])


BBC_TO_AGNEWS = {3: 0, 4: 0, 2: 1, 1: 2, 0: 3}  # bbc label -> agnews label (politics/entertainment->0, sport->1, ...)
QASC_KEYS = {k: i for i, k in enumerate("ABCDEFGH")}


def _sciq_options(row: Row) -> tuple[list[str], int]:
    """The shuffled options of a sciq row: set by :func:`sciq_preprocess`, else one fixed draw (seed 42)."""
    if "_options" in row:
        return row["_options"], row["_answer_idx"]
    return _shuffle_options(row, np.random.RandomState(SEED))


def _shuffle_options(row: Row, rs: np.random.RandomState) -> tuple[list[str], int]:
    opts: list[str | None] = [row["distractor1"], row["distractor2"], row["distractor3"], None]
    rs.shuffle(opts)
    idx = opts.index(None)
    opts[idx] = row["correct_answer"]
    return [str(o) for o in opts], idx


def sciq_preprocess(train: list[Row], val: list[Row], spec: DatasetSpec) -> None:
    """Shuffle each row's 3 distractors + answer with one RandomState(42) stream over train then eval rows, as
    upstream does with the global numpy state (the remap draw, when on, comes first and advances it)."""
    rs = np.random.RandomState(SEED)
    if spec.remap:
        remap_words(4, rs)
    for row in [*train, *val]:
        row["_options"], row["_answer_idx"] = _shuffle_options(row, rs)


def _strategy_label(row: Row) -> int:
    a = row["answer"]
    if isinstance(a, str):
        a = a.strip().lower() == "true"
    return int(bool(a))


def _squad_answer(row: Row, spec: DatasetSpec) -> str:
    texts = row["answers"]["text"]
    return str(texts[0]) if texts else ""


def _classification_text(row: Row, spec: DatasetSpec) -> str:
    """Synthetic classification rows use sst2's ``sentence`` or agnews's ``text`` column."""
    return f"Text:{row['sentence'] if 'sentence' in row else row['text']}\nLabel:"


# --------------------------------------------------------------------------------------------------- the registry
REGISTRY: dict[str, DatasetSpec] = {}
ALIASES: dict[str, str] = {"sciq_remap": "sciq", "qasc_remap": "qasc"}  # listed names that are remapped bases


def register(spec: DatasetSpec) -> DatasetSpec:
    REGISTRY[spec.name] = spec
    return spec


def _num_labels(n: int) -> list[str]:
    return [str(i) for i in range(n)]


def _single(
    name, hub_path, hub_config, splits, n_labels, columns, prompt_fn, label_fn, pipeline=pipe_standard, **kw
) -> DatasetSpec:
    return register(
        DatasetSpec(
            name=name,
            hub_path=hub_path,
            hub_config=hub_config,
            splits=splits,
            task_type=SINGLE,
            labels=_num_labels(n_labels),
            columns=columns,
            prompt_fn=prompt_fn,
            label_fn=label_fn,
            pipeline=pipeline,
            supports_remap=True,
            **kw,
        )
    )


def _multi(
    name,
    hub_path,
    hub_config,
    splits,
    columns,
    prompt_fn,
    answer_fn,
    parser,
    pipeline=pipe_standard,
    max_new_tokens=200,
    **kw,
) -> DatasetSpec:
    return register(
        DatasetSpec(
            name=name,
            hub_path=hub_path,
            hub_config=hub_config,
            splits=splits,
            task_type=MULTI,
            labels=None,
            columns=columns,
            prompt_fn=prompt_fn,
            answer_fn=answer_fn,
            parser=parser,
            pipeline=pipeline,
            max_new_tokens=max_new_tokens,
            **kw,
        )
    )


# single-token classification (IA2)
_single(
    "sst2",
    "stanfordnlp/sst2",
    None,
    ("train", "validation"),
    2,
    ("sentence", "label"),
    _text_label("sentence"),
    lambda r: r["label"],
    notes="0 negative, 1 positive",
)
_single(
    "finsen",
    "takala/financial_phrasebank",
    "sentences_50agree",
    ("train", "train"),
    2,
    ("sentence", "label"),
    _text_label("sentence"),
    lambda r: r["label"],
    pipeline=pipe_finsen,
    notes="negative/positive only (hub label 2 -> 1); the last num_val_samples shuffled rows are the eval pool",
)
_single(
    "poems",
    "google-research-datasets/poem_sentiment",
    None,
    (None, "train"),
    2,
    ("verse_text", "label"),
    _text_label("verse_text"),
    lambda r: r["label"],
    pipeline=pipe_poems,
    eval_only=True,
    notes="eval only: the hub train split, labels 0/1 (288 rows)",
)
_single(
    "agnews",
    "fancyzhx/ag_news",
    None,
    ("train", "test"),
    4,
    ("text", "label"),
    _text_label("text"),
    lambda r: r["label"],
    notes="0 World, 1 Sports, 2 Business, 3 Sci/Tech",
)
_single(
    "bbcnews",
    "SetFit/bbc-news",
    None,
    (None, "test"),
    4,
    ("text", "label"),
    lambda r, s: f"Text:{bbc_cut(r['text'])}\nLabel:",
    lambda r: BBC_TO_AGNEWS[int(r["label"])],
    eval_only=True,
    notes="eval only (OOD for agnews): text cut to 256 chars minus the last word; "
    "labels mapped to agnews's {tech 3, business 2, sport 1, entertainment/politics 0}",
)
_single(
    "strategytf",
    "wics/strategy-qa",
    None,
    ("test", "test"),
    2,
    ("question", "answer"),
    _question_answer("question"),
    _strategy_label,
    pipeline=pipe_strategytf,
    notes="one hub split; the last num_val_samples shuffled rows are the eval pool; answer False 0, True 1",
)
_single(
    "sciq",
    "allenai/sciq",
    None,
    ("train", "validation"),
    4,
    ("question", "distractor1", "distractor2", "distractor3", "correct_answer"),
    lambda r, s: _choices_prompt(r["question"], _sciq_options(r)[0], s),
    lambda r: _sciq_options(r)[1],
    preprocess=sciq_preprocess,
    notes="3 distractors + answer shuffled by one RandomState(42) stream; the IA2 runs use sciq_remap",
)
_single(
    "qasc",
    "allenai/qasc",
    None,
    ("train", "validation"),
    8,
    ("question", "choices", "answerKey"),
    lambda r, s: _choices_prompt(r["question"], list(r["choices"]["text"]), s),
    lambda r: QASC_KEYS[r["answerKey"]],
    notes="8 choices in hub order; the IA2 runs use qasc_remap",
)

# multi-token generation (IA2)
_multi(
    "gsm8k",
    "openai/gsm8k",
    "main",
    ("train", "test"),
    ("question", "answer"),
    _question_answer(),
    _field("answer"),
    parsers.parse_answer_gsm8k,
    notes="answer = the CoT solution ending in '#### n'",
)
_multi(
    "gsm8ks",
    "apple/GSM-Symbolic",
    "main",
    ("test", "test"),
    ("question", "answer"),
    _question_answer(),
    _field("answer"),
    parsers.parse_answer_gsm8k,
    notes="GSM-Symbolic: both pools come from the one test split (upstream; the eval pool is inside the train pool)",
)
for _sub in HMATH_SUBSETS:
    _multi(
        f"hmath_{_sub}",
        "EleutherAI/hendrycks_math",
        _sub,
        ("train", "test"),
        ("problem", "solution"),
        _question_answer("problem"),
        _field("solution"),
        parsers.parse_boxed,
        max_new_tokens=400,
        notes="answer = the solution containing \\boxed{}",
    )
_multi(
    "sciqa",
    "allenai/sciq",
    None,
    ("train", "validation"),
    ("question", "support", "correct_answer"),
    _question_answer(),
    lambda r, s: f"{r['support']}\n#### {r['correct_answer']}",
    parsers.parse_hash,
    notes="answer = '{support}\\n#### {correct_answer}'",
)
register(
    DatasetSpec(
        name="cmath",
        hub_path="camel-ai/math",
        hub_config=None,
        splits=("train", "train"),
        task_type=MULTI,
        labels=None,
        columns=("message_1", "message_2", parsers.CMATH_TOPIC_COLUMN, "sub_topic"),
        prompt_fn=lambda r, s: f"Question:{r['message_1']}\nAnswer:",
        answer_fn=lambda r, s: str(r["message_2"]),
        parser=parsers.parse_cmath,
        pipeline=pipe_cmath,
        max_new_tokens=400,
        notes="camel-ai/math (one hub split; --subset <topic> keeps one 'topic;' value, e.g. algebra): shuffled (42), "
        "the last num_val_samples rows are the eval pool; answer = the prose solution, parsed by parse_cmath "
        "(upstream marks its loader 'TODO: not working')",
    )
)

# hub sets used by other families (prompt rendering left to them: the raw row travels in example["row"])
_multi(
    "squad",
    "rajpurkar/squad",
    None,
    ("train", "validation"),
    ("id", "title", "context", "question", "answers"),
    lambda r, s: f"Context:{r['context']}\nQuestion:{r['question']}\nAnswer:",
    _squad_answer,
    None,
    max_new_tokens=32,
    keep_row=True,
    notes="raw row kept in example['row']; answer = first gold answer text",
)
_multi(
    "hh_rlhf",
    "Dahoas/full-hh-rlhf",
    None,
    ("train", "test"),
    ("prompt", "response", "chosen", "rejected"),
    lambda r, s: str(r["prompt"]),
    lambda r, s: str(r["chosen"]),
    None,
    max_new_tokens=128,
    keep_row=True,
    notes="raw row kept in example['row']; prompt = the dialogue, answer = the chosen reply",
)

# synthetic sets of the zoo (rows from actlab.data.world.synthetic_rows, in the hub schema of their namesake)
_single(
    "syn_sst2",
    None,
    None,
    ("train", "test"),
    2,
    ("sentence", "label"),
    _classification_text,
    lambda r: r["label"],
    pipeline=pipe_synthetic,
    source="synthetic",
    notes="synthetic sst2 (sentence, label)",
)
_single(
    "syn_agnews",
    None,
    None,
    ("train", "test"),
    4,
    ("text", "label"),
    _classification_text,
    lambda r: r["label"],
    pipeline=pipe_synthetic,
    source="synthetic",
    notes="synthetic agnews (text, label)",
)
_single(
    "syn_sst2_wide",
    None,
    None,
    ("train", "test"),
    2,
    ("sentence", "label"),
    _classification_text,
    lambda r: r["label"],
    pipeline=pipe_synthetic,
    source="synthetic",
    notes="synthetic sst2 (sentence, label) with 6 key words per class instead of 2",
)
#: syn_landmarks's label words: actlab.data.world.LANDMARK_LABELS (a test checks they agree)
LANDMARK_COUNTRIES = (
    "France",
    "Italy",
    "Egypt",
    "China",
    "India",
    "Brazil",
    "Japan",
    "Peru",
    "Greece",
    "Spain",
    "England",
    "Australia",
)
register(
    DatasetSpec(
        name="syn_landmarks",
        hub_path=None,
        hub_config=None,
        splits=("train", "test"),
        task_type=SINGLE,
        labels=list(LANDMARK_COUNTRIES),
        columns=("text", "label"),
        prompt_fn=_classification_text,
        label_fn=lambda r: r["label"],
        pipeline=pipe_synthetic,
        source="synthetic",
        notes="synthetic topic set: 'X is at the <landmark>.' -> its country (12 country-name labels, world knowledge "
        "of the zoo corpus; not remappable: 12 classes > 9 remap words)",
    )
)
_multi(
    "syn_gsm8k",
    None,
    None,
    ("train", "test"),
    ("question", "answer"),
    _question_answer(),
    _field("answer"),
    parsers.parse_answer_gsm8k,
    pipeline=pipe_synthetic,
    source="synthetic",
    notes="synthetic gsm8k",
)
_multi(
    "syn_squad",
    None,
    None,
    ("train", "test"),
    ("id", "title", "context", "question", "answers"),
    lambda r, s: f"Context:{r['context']}\nQuestion:{r['question']}\nAnswer:",
    _squad_answer,
    None,
    pipeline=pipe_synthetic,
    source="synthetic",
    max_new_tokens=32,
    keep_row=True,
    notes="synthetic squad",
)
_multi(
    "syn_hh",
    None,
    None,
    ("train", "test"),
    ("prompt", "chosen", "rejected"),
    lambda r, s: str(r["prompt"]),
    lambda r, s: str(r["chosen"]),
    None,
    pipeline=pipe_synthetic,
    source="synthetic",
    max_new_tokens=128,
    keep_row=True,
    notes="synthetic hh-rlhf",
)
_multi(
    "syn_passages",
    None,
    None,
    ("train", "test"),
    ("text",),
    _field("text"),
    lambda r, s: "",
    None,
    pipeline=pipe_synthetic,
    source="synthetic",
    max_new_tokens=128,
    keep_row=True,
    notes="synthetic passages {text} for compression, split by person (prompt = the passage, empty answer)",
)
for _name in ("syn_countries", "syn_tipsheets"):
    _multi(
        _name,
        None,
        None,
        ("train", "test"),
        ("prompt_a", "prompt_b", "skyline", "answer"),
        _field("skyline"),
        _field("answer"),
        None,
        pipeline=pipe_synthetic,
        source="synthetic",
        max_new_tokens=8,
        keep_row=True,
        notes="synthetic Lewis game {prompt_a, prompt_b, skyline, answer}: prompt = skyline (both halves), "
        "answer appended with no space; sender/receiver prompts are in example['row']",
    )


# ------------------------------------------------------------------------------------------------------ look-ups
def list_datasets() -> list[str]:
    """The registered names (plus the remapped IA2 sets ``sciq_remap``, ``qasc_remap``), sorted."""
    return sorted([*REGISTRY, *ALIASES])


def remappable() -> list[str]:
    return sorted(n for n, s in REGISTRY.items() if s.supports_remap)


def get_dataset(name: str) -> DatasetSpec:
    """The spec of ``name``; ``X_remap`` gives single-token dataset ``X`` with remapped label words.

    Raises ``ActlabError`` (one line, valid names listed) for an unknown name.
    """
    if name in REGISTRY:
        return REGISTRY[name]
    if name.startswith("cmath_") and len(name) > len("cmath_"):
        return cmath_spec(name[len("cmath_") :])
    if name.endswith("_remap") and name[: -len("_remap")] in REGISTRY:
        return REGISTRY[name[: -len("_remap")]].with_remap()
    raise unknown_choice(
        "dataset", name, list_datasets(), hint="single-token sets also take the _remap suffix (--label_template remap)"
    )


def cmath_spec(subset: str) -> DatasetSpec:
    """``cmath_<topic>``: camel-ai/math restricted to one topic (``algebra`` = ``topic;`` ``Algebra``; spaces in a
    topic are underscores). The topic is checked against the hub rows when they are loaded."""
    topic = re.sub(r"[\s_]+", "_", str(subset).strip().lower())
    if not re.fullmatch(r"[a-z0-9_\-]+", topic):
        raise ActlabError(
            f"--subset {subset!r} is not a camel-ai/math topic name; valid: e.g. algebra, number_theory, calculus"
        )
    return dataclasses.replace(REGISTRY["cmath"], name=f"cmath_{topic}", subset=topic, base="cmath")


def resolve(name: str, label_template: str | None = None, subset: str | None = None) -> DatasetSpec:
    """``prepare``'s name resolution: ``hmath`` + ``subset`` → ``hmath_<subset>``, ``cmath`` + ``subset`` →
    ``cmath_<subset>`` (one topic; ``cmath`` alone keeps every topic); ``label_template='remap'`` → ``_remap``."""
    if label_template not in (None, "normal", "remap"):
        raise unknown_choice("label_template", label_template, ["normal", "remap"])
    if name == "cmath" and subset:
        name = f"cmath_{subset}"
    if name == "hmath":
        subset = subset or "algebra"
        if subset not in HMATH_SUBSETS:
            raise unknown_choice("subset", subset, HMATH_SUBSETS)
        name = f"hmath_{subset}"
    spec = get_dataset(name)
    if label_template == "remap":
        spec = spec.with_remap()
    return spec
