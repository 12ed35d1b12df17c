"""The synthetic world: entity vocabularies, facts, and generators of every text family the zoo models see.

Everything here is pure Python and deterministic for a seed (``random.Random(seed)``; no global state).

Two kinds of output:

* **Corpus documents** (``icl_episode``, ``passage``, ``fact_doc``, ...): plain strings used to pretrain zoo models
  (see :mod:`actlab.zoo.corpus`).
* **Dataset rows** (:func:`synthetic_rows`): lists of dicts in the *hub column schema* of the real dataset each
  synthetic set imitates, so the data registry's formatters apply to them unchanged.

Train/test disjointness: every row has an identity key (its text, its person, its numbers...); a stable hash of the
key assigns it to ``train`` (80 %) or ``test`` (20 %), and each split keeps only its own rows. A test row can
therefore never equal a train row, whatever the seeds. For the Lewis games the key is the *person*, so test rows
use people never seen in the corpus's compositional examples (the landmark→country facts themselves are world
knowledge and are in the corpus).
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Callable

from actlab.core.errors import ActlabError, unknown_choice

# ---------------------------------------------------------------------------------------------------- vocabularies
#: Label words used by IA2's ``--label_template remap`` (ia2.md §5).
REMAP_LABELS = ("Monday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday", "apple", "banana", "orange")
#: All label words of ICL pretraining episodes (remap words + more), so a label is only knowable from the demos.
LABEL_WORDS = REMAP_LABELS + (
    "Tuesday", "pear", "grape", "lemon", "red", "blue", "green", "yellow", "north", "south", "east", "west",
    "cat", "dog", "horse", "lion",
)  # fmt: skip

#: Class-determining key words (one per class, or two) of synthetic classification texts.
KEY_WORDS = (
    "great", "awful", "lovely", "boring", "brilliant", "terrible", "charming", "dull", "superb", "horrible",
    "wonderful", "bland", "football", "election", "market", "software", "tennis", "senate", "stocks", "robot",
    "soccer", "treaty", "profit", "laptop", "river", "mountain", "forest", "desert", "ocean", "island", "valley",
    "castle", "violin", "piano", "guitar", "trumpet", "tiger", "eagle", "dolphin", "spider", "rabbit", "turtle",
    "pizza", "bread", "cheese", "coffee", "soup", "candle", "hammer", "ladder", "mirror", "pillow", "rocket",
    "wallet", "winter", "summer", "thunder", "rainbow", "silver", "copper", "marble", "velvet", "diamond", "crystal",
)  # fmt: skip
#: Neutral words that fill the texts; disjoint from KEY_WORDS, so they never carry the class.
FILLER_WORDS = (
    "story", "film", "thing", "day", "idea", "place", "moment", "friend", "people", "time", "way", "part",
    "really", "quite", "very", "just", "still", "also", "often", "always", "seems", "looks", "feels", "was",
    "is", "became", "remains", "with", "about", "from", "for", "in", "of", "and", "but", "so", "then", "today",
    "again", "here", "there", "after", "before", "new", "old", "long", "short", "whole", "other", "same",
)  # fmt: skip
DETERMINERS = ("the", "a", "this", "that", "my", "our", "one", "every", "some", "each")

#: syn_sst2: class 0 = negative, 1 = positive (stanfordnlp/sst2 convention); two key words per class.
SST2_KEYS = (("awful", "boring"), ("great", "lovely"))
#: syn_agnews: World, Sports, Business, Sci/Tech (fancyzhx/ag_news convention).
AGNEWS_KEYS = (("treaty", "election"), ("football", "tennis"), ("market", "profit"), ("software", "robot"))
#: syn_sst2_wide: the twelve sentiment words of KEY_WORDS, six per class (0 negative, 1 positive), so that a few
#: labelled examples do not cover every key (with SST2_KEYS, 8 examples nearly always show all four keys).
SST2_WIDE_KEYS = (
    ("awful", "boring", "terrible", "dull", "horrible", "bland"),
    ("great", "lovely", "brilliant", "charming", "superb", "wonderful"),
)  # fmt: skip

PERSONS = (
    "Alice", "Bob", "Carol", "David", "Emma", "Frank", "Grace", "Henry", "Irene", "Jack", "Karen", "Leo", "Maria",
    "Nathan", "Olivia", "Peter", "Quinn", "Rosa", "Samuel", "Tina", "Victor", "Wendy", "Xavier", "Yara", "Zoe",
    "Adam", "Bella", "Chris", "Diana", "Ethan", "Fiona", "George", "Hannah", "Ivan", "Julia", "Kevin", "Laura",
    "Mark", "Nora", "Oscar", "Paula", "Ryan", "Sofia", "Tom", "Uma", "Vera", "Will", "Amy", "Ben", "Clara",
)  # fmt: skip
#: country -> landmarks (world knowledge for the Countries Lewis game).
COUNTRIES = {
    "France": ("Eiffel Tower", "Louvre", "Arc de Triomphe"),
    "Italy": ("Colosseum", "Leaning Tower", "Rialto Bridge"),
    "Egypt": ("Great Pyramid", "Sphinx", "Karnak Temple"),
    "China": ("Great Wall", "Forbidden City", "Terracotta Army"),
    "India": ("Taj Mahal", "Red Fort", "Lotus Temple"),
    "Brazil": ("Christ the Redeemer", "Sugarloaf Mountain", "Copacabana Beach"),
    "Japan": ("Mount Fuji", "Tokyo Tower", "Golden Pavilion"),
    "Peru": ("Machu Picchu", "Rainbow Mountain", "Lake Titicaca"),
    "Greece": ("Parthenon", "Acropolis", "Temple of Zeus"),
    "Spain": ("Alhambra", "Sagrada Familia", "Prado Museum"),
    "England": ("Big Ben", "Tower Bridge", "Stonehenge"),
    "Australia": ("Opera House", "Uluru", "Harbour Bridge"),
}
LANDMARK_COUNTRY = {lm: c for c, lms in COUNTRIES.items() for lm in lms}
COMPANIES = (
    "Acme", "Borex", "Cortel", "Dynex", "Elbion", "Fintra", "Globex", "Helix", "Intron", "Jovix", "Kelvar",
    "Lumen", "Mirex", "Novra", "Omnix", "Praxa", "Quorra", "Rivon", "Solvex", "Tarsa", "Unity", "Vexor",
)  # fmt: skip
JOBS = ("baker", "doctor", "teacher", "pilot", "farmer", "painter", "nurse", "driver", "singer", "lawyer")
CITIES = ("Paris", "Rome", "Cairo", "Tokyo", "Lima", "Madrid", "London", "Sydney", "Athens", "Delhi", "Beijing")
COLORS = ("red", "blue", "green", "yellow", "purple", "orange", "black", "white")
PETS = ("cat", "dog", "parrot", "rabbit", "turtle", "hamster", "horse", "goat")
ITEMS = ("apples", "pencils", "books", "coins", "stickers", "marbles", "cookies", "cards", "shells", "stamps")

# hh-like dialogs: the preference property is politeness/helpfulness (scored by :func:`preference_reward`).
HH_TASKS = (
    "bake bread", "plant a tree", "fix a bike", "learn the piano", "write a letter", "clean a window",
    "cook rice", "paint a fence", "train a dog", "sleep better", "save money", "make tea", "tie a knot",
    "read faster", "grow tomatoes", "study for a test", "change a tire", "fold a shirt", "wash a car", "start a garden",
)  # fmt: skip
HH_STEPS = (
    "start slowly", "gather what you need", "follow the steps in order", "take short breaks", "ask a friend",
    "practice every day", "check your work", "keep it simple", "write down a plan", "be patient",
)  # fmt: skip
POLITE_WORDS = ("sure", "happy", "glad", "please", "thank", "thanks", "welcome", "hope", "helps", "good", "luck")
RUDE_WORDS = ("no", "stupid", "idiot", "whatever", "annoying", "boring", "dumb", "go", "away", "bother", "useless")
POLITE_OPENERS = ("Sure, I am happy to help!", "Of course, glad you asked!", "Sure thing, happy to help.")
POLITE_CLOSERS = ("I hope this helps. Good luck!", "Thank you for asking, and good luck!", "Hope this helps!")
RUDE_OPENERS = ("No. That is a stupid question.", "Whatever. Go away.", "Ugh, you are so annoying.")
RUDE_CLOSERS = ("Do not bother me again, idiot.", "That is all, now go away.", "This is useless, whatever.")


# ---------------------------------------------------------------------------------------------------- split helper
def _bucket(key: str) -> str:
    """Stable train/test assignment of an identity key (80/20, independent of seeds and of Python's hash salt)."""
    h = int(hashlib.md5(key.encode("utf-8")).hexdigest()[:8], 16)
    return "test" if h % 5 == 0 else "train"


def _in_split(key: str, split: str) -> bool:
    return split == "any" or _bucket(key) == split


# ---------------------------------------------------------------------------------------------------- ICL texts
def class_text(rng: random.Random, key: str, n_fill: tuple[int, int] = (0, 3)) -> str:
    """A short text: a determiner, filler words, and the class key word last (``the film was really great``).

    The key word sits right before ``\nLabel:``, which is what lets a sub-million-parameter model learn the
    copy/induction route within its few-minute budget (a key at a random place did not take off in 900 steps).
    """
    words = [rng.choice(FILLER_WORDS) for _ in range(rng.randint(*n_fill))]
    return " ".join([rng.choice(DETERMINERS), *words, key])


def format_cls(text: str, label: str | None = None) -> str:
    """IA2's classification prompt ``Text:{text}\\nLabel:`` (+ the label appended with no space)."""
    return f"Text:{text}\nLabel:" + (label or "")


def join_demos(demos: list[tuple[str, str]], query: str) -> str:
    """IA2's prompt layout: ``"\\n\\n".join(demo_prompt + demo_answer) + "\\n\\n" + query_prompt``."""
    return "".join(format_cls(t, lab) + "\n\n" for t, lab in demos) + format_cls(query)


def random_task(rng: random.Random, n_classes: int, keys_per_class: int = 1, labels: tuple[str, ...] = LABEL_WORDS):
    """A random classification task: per class its key words and a random label word (distinct)."""
    keys = rng.sample(KEY_WORDS, n_classes * keys_per_class)
    class_keys = [tuple(keys[i * keys_per_class : (i + 1) * keys_per_class]) for i in range(n_classes)]
    return class_keys, rng.sample(labels, n_classes)


def icl_episode(rng: random.Random) -> str:
    """One pretraining episode: 8–14 labelled texts of one random task with a random label mapping.

    With a loss on every token, the i-th label is an ICL query with i−1 demos (so k = 0..13 all occur); the mapping
    changes every episode, so the labels are learnable only by looking them up in the context (induction/copy).
    """
    n_classes = rng.choice((2, 2, 3, 4, 4))
    kpc = 1 if rng.random() < 0.8 else 2
    class_keys, labels = random_task(rng, n_classes, kpc)
    n = rng.randint(8, 14)
    parts = []
    for _ in range(n):
        c = rng.randrange(n_classes)
        parts.append(format_cls(class_text(rng, rng.choice(class_keys[c]), (0, 2)), labels[c]))
    return "\n\n".join(parts)


def icl_copy(rng: random.Random) -> str:
    """The copy task of feasibility.md §5 in the zoo's tokens: 8 × ``" KEY\nLabel:LABEL"`` with no text around them.

    4 random key words with 4 distinct random labels per episode; every position after a key's first occurrence is an
    induction example (copy the token that followed the previous occurrence of the current token). ``tiny`` trains on
    these first (``CorpusSpec.warmup_mix``): from scratch its induction circuit forms here within a few hundred
    steps, and then carries over to the ``Text:…\nLabel:`` episodes within ~100 steps. On the formatted episodes
    alone it did not form within the build budget (docs/zoo.md, "What did not work").
    """
    keys, labels = rng.sample(KEY_WORDS, 4), rng.sample(LABEL_WORDS, 4)
    return "".join(f" {keys[c]}\nLabel:{labels[c]}" for c in (rng.randrange(4) for _ in range(8)))


# ---------------------------------------------------------------------------------------------------- world texts
def _person_profile(person: str) -> dict:
    """Fixed attributes of a person (a function of the name only: the same person is the same everywhere)."""
    r = random.Random("profile:" + person)
    return {"job": r.choice(JOBS), "city": r.choice(CITIES), "color": r.choice(COLORS), "pet": r.choice(PETS),
            "age": r.randint(20, 70)}  # fmt: skip


def fact_doc(rng: random.Random) -> str:
    """A few world facts (landmark → country), the knowledge behind the Countries game."""
    lms = rng.sample(sorted(LANDMARK_COUNTRY), rng.randint(2, 4))
    tmpl = ("The {l} is in {c}.", "You can visit the {l} in {c}.", "The {l} is a famous place in {c}.")
    return " ".join(rng.choice(tmpl).format(l=lm, c=LANDMARK_COUNTRY[lm]) for lm in lms)


def fresh_profile(rng: random.Random) -> dict:
    """Attributes drawn afresh from ``rng`` (not the person's fixed profile): only the text can tell them."""
    return {"job": rng.choice(JOBS), "city": rng.choice(CITIES), "color": rng.choice(COLORS), "pet": rng.choice(PETS),
            "age": rng.randint(20, 70)}  # fmt: skip


def passage(rng: random.Random, person: str | None = None, profile: dict | None = None) -> str:
    """A plain passage about one person (the material for ICAE autoencoding and squad-like QA).

    The attributes are the person's fixed profile unless ``profile`` is given (:func:`fresh_profile`); the landmark
    is always drawn from ``rng``.
    """
    person = person or rng.choice(PERSONS)
    p = profile or _person_profile(person)
    lm = rng.choice(sorted(LANDMARK_COUNTRY))
    sents = [
        f"{person} is a {p['job']} who lives in {p['city']}.",
        f"{person} is {p['age']} years old.",
        f"The favourite colour of {person} is {p['color']}.",
        f"{person} has a {p['pet']} at home.",
        f"Last summer {person} went to see the {lm} in {LANDMARK_COUNTRY[lm]}.",
        f"Every morning {person} drinks coffee and reads a book.",
        f"On weekends {person} likes to walk in the park with friends.",
    ]
    first, rest = sents[0], sents[1:]
    rng.shuffle(rest)
    return " ".join([first, *rest[: rng.randint(3, len(rest))]])


#: The facts a passage states, as regexes over :func:`passage`'s sentence templates: kind → (pattern, value group).
PASSAGE_FACTS: dict[str, tuple[re.Pattern, int]] = {
    "job": (re.compile(r"\b(\w+) is a (\w+) who lives in (\w+)\."), 2),
    "city": (re.compile(r"\b(\w+) is a (\w+) who lives in (\w+)\."), 3),
    "age": (re.compile(r"\b(\w+) is (\d+) years old\."), 2),
    "color": (re.compile(r"The favourite colour of (\w+) is (\w+)\."), 2),
    "pet": (re.compile(r"\b(\w+) has a (\w+) at home\."), 2),
    "landmark": (re.compile(r"went to see the ([\w ]+?) in (\w+)\."), 1),
    "country": (re.compile(r"went to see the ([\w ]+?) in (\w+)\."), 2),
}
ATTRIBUTE_KINDS = tuple(PASSAGE_FACTS)


def passage_facts(text: str) -> dict[str, tuple[str, int, int]]:
    """What a (reconstructed) passage states: ``{"name": (person, start, end), "job": ("baker", start, end), ...}``.

    The name is the first word of a ``"<X> is a <job> who lives in <city>."`` sentence (every passage opens with one),
    else the text's first word; attributes are read with :data:`PASSAGE_FACTS` (first match; a kind whose sentence is
    missing or garbled is absent). Spans are character offsets of the value in ``text``.
    """
    out: dict[str, tuple[str, int, int]] = {}
    m = PASSAGE_FACTS["job"][0].search(text)
    if m:
        out["name"] = (m.group(1), m.start(1), m.end(1))
    elif (w := re.search(r"\w+", text)) is not None:
        out["name"] = (w.group(0), w.start(), w.end())
    for kind, (pat, g) in PASSAGE_FACTS.items():
        if (m := pat.search(text)) is not None:
            out[kind] = (m.group(g), m.start(g), m.end(g))
    return out


def name_spans(text: str, name: str) -> list[tuple[int, int]]:
    """Character spans of every whole-word occurrence of ``name`` in ``text``."""
    return [(m.start(), m.end()) for m in re.finditer(rf"\b{re.escape(name)}\b", text)]


def countries_example(rng: random.Random, person: str) -> dict:
    lm = rng.choice(sorted(LANDMARK_COUNTRY))
    a = f"{person} is at the {lm}."
    b = f"Which country is {person} in? Answer:"
    return {"person": person, "landmark": lm, "prompt_a": a, "prompt_b": b, "skyline": f"{a} {b}",
            "answer": LANDMARK_COUNTRY[lm]}  # fmt: skip


def tipsheet_example(rng: random.Random) -> dict:
    comps = rng.sample(COMPANIES, rng.randint(3, 4))
    good = rng.choice(comps)
    lines = [f"{c} will {'rise' if c == good else 'fall'}." for c in comps]
    a = "Tip sheet: " + " ".join(lines)
    b = "Which company should you buy? Answer:"
    return {"companies": comps, "prompt_a": a, "prompt_b": b, "skyline": f"{a} {b}", "answer": good}


def arithmetic_example(rng: random.Random) -> dict:
    """A gsm8k-like word problem with a worked answer ending in ``#### n``."""
    name, item = rng.choice(PERSONS), rng.choice(ITEMS)
    a, b = rng.randint(2, 20), rng.randint(1, 12)
    kind = rng.choice(("add", "sub", "add2"))
    if kind == "add":
        q = f"{name} has {a} {item}. {name} gets {b} more {item}. How many {item} does {name} have now?"
        ans = f"{name} has {a} + {b} = <<{a}+{b}={a + b}>>{a + b} {item}.\n#### {a + b}"
    elif kind == "sub":
        a = a + b
        q = f"{name} has {a} {item}. {name} gives away {b} {item}. How many {item} does {name} have left?"
        ans = f"{name} has {a} - {b} = <<{a}-{b}={a - b}>>{a - b} {item} left.\n#### {a - b}"
    else:
        c = rng.randint(1, 9)
        q = (f"{name} has {a} {item}. {name} buys {b} more and then finds {c} more. "
             f"How many {item} does {name} have?")  # fmt: skip
        ans = (f"After buying, {name} has {a} + {b} = <<{a}+{b}={a + b}>>{a + b} {item}.\n"
               f"After finding, {name} has {a + b} + {c} = <<{a + b}+{c}={a + b + c}>>{a + b + c} {item}.\n"
               f"#### {a + b + c}")  # fmt: skip
    return {"question": q, "answer": ans}


def squad_example(rng: random.Random, person: str, profile: dict | None = None) -> dict:
    ctx = passage(rng, person, profile)
    p = profile or _person_profile(person)
    qa = [(f"Where does {person} live?", p["city"]), (f"What is the job of {person}?", p["job"]),
          (f"What pet does {person} have?", p["pet"]), (f"How old is {person}?", str(p["age"])),
          (f"What is the favourite colour of {person}?", p["color"])]  # fmt: skip
    found = [(q, a, m.start()) for q, a in qa if (m := re.search(rf"\b{a}\b", ctx))]
    q, a, start = rng.choice(found)
    return {"title": person, "context": ctx, "question": q, "answers": {"text": [a], "answer_start": [start]}}


def hh_example(rng: random.Random) -> dict:
    """A Dahoas/full-hh-rlhf-like row: a polite, helpful ``chosen`` and a rude ``rejected`` response."""
    task = rng.choice(HH_TASKS)
    prompt = f"\n\nHuman: Can you tell me how to {task}?\n\nAssistant:"
    steps = rng.sample(HH_STEPS, 2)
    good = f" {rng.choice(POLITE_OPENERS)} To {task}, {steps[0]}, then {steps[1]}. {rng.choice(POLITE_CLOSERS)}"
    bad = f" {rng.choice(RUDE_OPENERS)} {rng.choice(RUDE_CLOSERS)}"
    return {"prompt": prompt, "response": good, "chosen": good, "rejected": bad, "task": task}


def preference_reward(text: str) -> float:
    """The programmatic reward of the hh-like preference property: (#polite − #rude words) / sqrt(#words).

    Positive for polite, helpful text; negative for rude text; 0 for empty or neutral text.
    """
    words = [w.strip(".,!?;:'\"").lower() for w in text.split()]
    words = [w for w in words if w]
    if not words:
        return 0.0
    score = sum(w in POLITE_WORDS for w in words) - sum(w in RUDE_WORDS for w in words)
    return float(score) / len(words) ** 0.5


def dialog_doc(rng: random.Random) -> str:
    """hh-like dialog for pretraining: mostly the polite response, sometimes the rude one (so steering has room)."""
    ex = hh_example(rng)
    return ex["prompt"] + (ex["chosen"] if rng.random() < 0.7 else ex["rejected"])


def _train_person(rng: random.Random) -> str:
    while True:
        p = rng.choice(PERSONS)
        if _bucket("person:" + p) == "train":
            return p


#: Corpus document generators, by name. Prompted families use the data registry's formats exactly (prompt ending in
#: ``Answer:`` / ``Label:``, answer appended with no space), so a zoo model sees at test time what it saw in training. (used by corpus specs in :mod:`actlab.zoo.specs`).
#: Generators that involve people use train-split people only, so test rows stay unseen.
DOC_GENERATORS: dict[str, Callable[[random.Random], str]] = {
    "icl": icl_episode,
    "icl_copy": icl_copy,
    "facts": fact_doc,
    "passages": lambda r: passage(r, _train_person(r)),
    "countries": lambda r: (lambda e: e["skyline"] + e["answer"])(countries_example(r, _train_person(r))),
    "tipsheets": lambda r: (lambda e: e["skyline"] + e["answer"])(tipsheet_example(r)),
    "arithmetic": lambda r: (lambda e: f"Question:{e['question']}\nAnswer:{e['answer']}")(arithmetic_example(r)),
    "squad": lambda r: (
        lambda e: f"Context:{e['context']}\nQuestion:{e['question']}\nAnswer:{e['answers']['text'][0]}"
    )(squad_example(r, _train_person(r))),
    "dialogs": dialog_doc,
}


#: What ``<s>`` separates in a repeat document: the corpus restarts position ids there (see :func:`passage_repeat`).
RESTART = "<s>"


def passage_repeat(rng: random.Random, restart: bool = False, person: str | None = None) -> str:
    """A passage with fresh attributes, then the same passage again: ``p\np``, or with ``restart`` ``p<s>p``.

    With ``restart`` the zoo corpus gives the second copy the first one's position ids (``<s>`` at 0, the copy at
    ``1, 2, …``), how ICAE's EPL lays out its decoder (``[BOS] slots [AE] text`` with the text at ``1, 2, …``). The
    attributes and the landmark are drawn afresh, so the second copy is predictable only by copying the first.
    """
    person = person or _train_person(rng)
    p = passage(rng, person, fresh_profile(rng))
    return p + (RESTART if restart else "\n") + p


#: The words of :func:`word_repeat`: every name and attribute value of the world's passages.
COPY_WORDS = tuple(
    sorted({*PERSONS, *JOBS, *CITIES, *COLORS, *PETS, *COUNTRIES, *(w for lm in LANDMARK_COUNTRY for w in lm.split())})
)


def word_repeat(rng: random.Random, restart: bool = False) -> str:
    """8–20 random world words, then the same words again (``\n`` or, with ``restart``, ``<s>`` between them).

    The dense copy task of the copy-capable decoder's warm-up: every token of the second half is predictable only
    by copying (an induction head), none from the first half's statistics. On passage repeats alone (where only the
    names and attributes need copying) no induction formed in 1000 steps (docs/zoo.md, "tiny-copy").
    """
    text = " ".join(rng.choice(COPY_WORDS) for _ in range(rng.randint(8, 20)))
    return text + (RESTART if restart else "\n") + text


#: Corpus generators of the copy-capable decoder (``tiny-copy``); kept apart from :data:`DOC_GENERATORS`, whose
#: documents also train the zoo's tokenizer (adding one there would change every zoo model's tokenizer).
#: Fresh attributes throughout: none of these documents states a person's fixed profile.
COPY_GENERATORS: dict[str, Callable[[random.Random], str]] = {
    "word_repeat": lambda r: word_repeat(r, restart=False),
    "word_repeat_restart": lambda r: word_repeat(r, restart=True),
    "passage_repeat": lambda r: passage_repeat(r, restart=False),
    "passage_repeat_restart": lambda r: passage_repeat(r, restart=True),
    "fresh_passages": lambda r: passage(r, _train_person(r), fresh_profile(r)),
    "fresh_squad": lambda r: (
        lambda e: f"Context:{e['context']}\nQuestion:{e['question']}\nAnswer:{e['answers']['text'][0]}"
    )(squad_example(r, _train_person(r), fresh_profile(r))),
}


def generator(name: str) -> Callable[[random.Random], str]:
    """A corpus generator by name (:data:`DOC_GENERATORS` or :data:`COPY_GENERATORS`)."""
    if name in DOC_GENERATORS:
        return DOC_GENERATORS[name]
    if name in COPY_GENERATORS:
        return COPY_GENERATORS[name]
    raise unknown_choice("corpus generator", name, {**DOC_GENERATORS, **COPY_GENERATORS})


# ---------------------------------------------------------------------------------------------------- dataset rows
def _rows(n: int, split: str, seed: int, name: str, make: Callable[[random.Random], tuple[str, dict]]) -> list[dict]:
    if split not in ("train", "test"):
        raise unknown_choice("split", split, ("train", "test"))
    if n < 0:
        raise ActlabError(f"n must be >= 0, got {n}")
    rng = random.Random(f"{name}:{split}:{seed}")
    rows: list[dict] = []
    tries = 0
    while len(rows) < n:
        tries += 1
        if tries > 200 * n + 1000:
            raise ActlabError(f"cannot draw {n} distinct {name} rows for split {split!r}; ask for fewer")
        key, row = make(rng)
        # people-keyed rows split by person (globally, as the corpus does); others by their own identity
        if _in_split(key if key.startswith("person:") else f"{name}:{key}", split):
            rows.append(row)
    return rows


def _cls_maker(keys: tuple[tuple[str, ...], ...], col: str):
    def make(rng: random.Random):
        c = rng.randrange(len(keys))
        text = class_text(rng, rng.choice(keys[c]), (1, 4))
        return text, {col: text, "label": c}

    return make


def _countries_maker(rng: random.Random):
    person = rng.choice(PERSONS)
    ex = countries_example(rng, person)
    return f"person:{person}", ex


#: syn_landmarks's label order: the countries of :data:`COUNTRIES` in definition order.
LANDMARK_LABELS = tuple(COUNTRIES)


def _landmarks_maker(rng: random.Random):
    """A Countries-game fact as a classification row: ``{"text": "Alice is at the Louvre.", "label": 0}`` (France).

    The text is the game's ``prompt_a``; the label is the landmark's country, which ``tiny`` learned from the corpus's
    ``facts`` and ``countries`` documents (a real prior, unlike the key words, whose labels change every episode).
    Split by person, as syn_countries.
    """
    person = rng.choice(PERSONS)
    ex = countries_example(rng, person)
    return f"person:{person}", {"text": ex["prompt_a"], "label": LANDMARK_LABELS.index(ex["answer"])}


def _squad_maker(rng: random.Random):
    person = rng.choice(PERSONS)
    ex = squad_example(rng, person)
    ex = {"id": hashlib.md5((ex["context"] + ex["question"]).encode()).hexdigest()[:24], **ex}
    return f"person:{person}", ex


def _passages_maker(rng: random.Random):
    """A passage keyed by its person: test passages are about people no train passage (nor zoo corpus) mentions."""
    person = rng.choice(PERSONS)
    return f"person:{person}", {"text": passage(rng, person)}


def _keyed(fn: Callable[[random.Random], dict], key_col: str):
    def make(rng: random.Random):
        row = fn(rng)
        return str(row[key_col]), row

    return make


SYNTHETIC: dict[str, tuple[str, Callable[[random.Random], tuple[str, dict]]]] = {
    "syn_sst2": ("stanfordnlp/sst2 schema {sentence, label∈{0,1}}", _cls_maker(SST2_KEYS, "sentence")),
    "syn_agnews": ("fancyzhx/ag_news schema {text, label∈{0..3}}", _cls_maker(AGNEWS_KEYS, "text")),
    "syn_sst2_wide": ("stanfordnlp/sst2 schema {sentence, label∈{0,1}}, 6 keys per class",
                      _cls_maker(SST2_WIDE_KEYS, "sentence")),
    "syn_landmarks": ("{text, label∈{0..11}} (ag_news-like topic schema; label = country of the landmark)",
                      _landmarks_maker),
    "syn_gsm8k": ("openai/gsm8k schema {question, answer='... #### n'}", _keyed(arithmetic_example, "question")),
    "syn_squad": ("rajpurkar/squad schema {id, title, context, question, answers{text, answer_start}}", _squad_maker),
    "syn_hh": ("Dahoas/full-hh-rlhf schema {prompt, response, chosen, rejected}",
               _keyed(lambda r: {k: v for k, v in hh_example(r).items() if k != "task"}, "prompt")),
    "syn_passages": ("{text}, split by person", _passages_maker),
    "syn_countries": ("{person, landmark, prompt_a, prompt_b, skyline, answer}", _countries_maker),
    "syn_tipsheets": ("{companies, prompt_a, prompt_b, skyline, answer}", _keyed(tipsheet_example, "prompt_a")),
}  # fmt: skip


def synthetic_rows(name: str, split: str, n: int, seed: int = 0) -> list[dict]:
    """``n`` rows of the synthetic dataset ``name`` for ``split`` ("train"/"test"), deterministic for ``seed``.

    Names and schemas (hub column schema of the imitated dataset, so the registry's formatters apply unchanged):

    - ``syn_sst2``: ``{"sentence": str, "label": int}``, 2 classes (0 neg: "awful"/"boring"; 1 pos: "great"/"lovely").
      The class is set by one key word in a short text; with remapped label words only demos reveal the labels.
    - ``syn_agnews``: ``{"text": str, "label": int}``, 4 classes (World, Sports, Business, Sci/Tech key words).
    - ``syn_sst2_wide``: as ``syn_sst2`` with six key words per class (:data:`SST2_WIDE_KEYS`: the twelve sentiment
      words of :data:`KEY_WORDS`), so a few labelled examples leave some keys unseen.
    - ``syn_landmarks``: ``{"text": "Alice is at the Louvre.", "label": int}``, 12 classes: the landmark's country
      (:data:`LANDMARK_LABELS` order). The class is world knowledge of the zoo corpus (facts, Countries game).
    - ``syn_gsm8k``: ``{"question": str, "answer": "worked steps ... #### n"}`` (additions/subtractions, n ≤ 50).
    - ``syn_squad``: ``{"id", "title", "context", "question", "answers": {"text": [a], "answer_start": [i]}}``;
      ``context[i:i+len(a)] == a``.
    - ``syn_hh``: ``{"prompt": "\\n\\nHuman: ...\\n\\nAssistant:", "response", "chosen", "rejected"}``; ``response ==
      chosen`` (polite, helpful), ``rejected`` is rude; :func:`preference_reward` scores the property.
    - ``syn_passages``: ``{"text": str}`` plain passages (4–7 sentences) for compression; split by person, so a test
      passage is about a person that no train passage (and no zoo corpus document) is about.
    - ``syn_countries`` (Lewis game): ``{"person", "landmark", "prompt_a": "Alice is at the Louvre.",
      "prompt_b": "Which country is Alice in? Answer:", "skyline": prompt_a + " " + prompt_b, "answer": "France"}``.
      A sees the fact; B must name the country; the skyline model sees both.
    - ``syn_tipsheets`` (Lewis game): ``{"companies": [...], "prompt_a": "Tip sheet: Acme will fall. Borex will
      rise. ...", "prompt_b": "Which company should you buy? Answer:", "skyline", "answer": "Borex"}``.

    Train and test rows never overlap (a stable hash of each row's identity key picks its split; for the people-based
    sets the key is the person, so test people never occur in the zoo corpora's compositional examples).
    """
    if name not in SYNTHETIC:
        raise unknown_choice("synthetic dataset", name, SYNTHETIC)
    return _rows(n, split, seed, name, SYNTHETIC[name][1])
