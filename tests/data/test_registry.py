import numpy as np
import pytest

from actlab.core.errors import ActlabError
from actlab.data import parsers
from actlab.data.registry import (
    REMAP_VOCAB,
    bbc_cut,
    build_icl_prompt,
    get_dataset,
    list_datasets,
    remap_words,
    resolve,
    sciq_preprocess,
)
from tests.data import hub_rows

IA2_SEED_NAMES = [
    "gsm8k",
    "gsm8ks",
    "hmath_algebra",
    "cmath",
    "sciqa",
    "sciq_remap",
    "qasc_remap",
    "sst2",
    "poems",
    "finsen",
    "agnews",
    "bbcnews",
    "strategytf",
]
SYNTHETIC = [
    "syn_sst2",
    "syn_agnews",
    "syn_gsm8k",
    "syn_squad",
    "syn_hh",
    "syn_passages",
    "syn_countries",
    "syn_tipsheets",
]


def test_every_seed_and_synthetic_name_is_registered():
    names = list_datasets()
    for n in IA2_SEED_NAMES + SYNTHETIC + ["squad", "hh_rlhf"]:
        assert n in names
        assert get_dataset(n).name == n


def test_hub_sources():
    assert (get_dataset("sst2").hub_path, get_dataset("sst2").splits) == ("stanfordnlp/sst2", ("train", "validation"))
    assert (get_dataset("gsm8k").hub_path, get_dataset("gsm8k").hub_config) == ("openai/gsm8k", "main")
    assert get_dataset("gsm8ks").hub_path == "apple/GSM-Symbolic" and get_dataset("gsm8ks").splits == ("test", "test")
    assert (get_dataset("hmath_algebra").hub_path, get_dataset("hmath_algebra").hub_config) == (
        "EleutherAI/hendrycks_math",
        "algebra",
    )
    assert get_dataset("finsen").hub_config == "sentences_50agree"
    assert get_dataset("poems").splits == (None, "train") and get_dataset("poems").eval_only
    assert get_dataset("bbcnews").splits == (None, "test") and get_dataset("bbcnews").eval_only
    assert get_dataset("strategytf").hub_path == "wics/strategy-qa"
    assert get_dataset("cmath").hub_path == "camel-ai/math" and get_dataset("cmath").supported
    assert get_dataset("cmath").parser is parsers.parse_cmath and "topic;" in get_dataset("cmath").columns
    assert get_dataset("cmath_algebra").subset == "algebra" and get_dataset("cmath_algebra").name == "cmath_algebra"
    assert get_dataset("squad").hub_path == "rajpurkar/squad"
    assert get_dataset("hh_rlhf").hub_path == "Dahoas/full-hh-rlhf"


def test_remap_words_match_paper_mapping():
    assert remap_words(8) == ["apple", "Friday", "banana", "Saturday", "Thursday", "Sunday", "Wednesday", "Monday"]
    assert get_dataset("sst2_remap").labels == ["apple", "Friday"]
    assert get_dataset("qasc_remap").labels == remap_words(8)
    assert get_dataset("sciq_remap").labels == ["apple", "Friday", "banana", "Saturday"]
    # the upstream draw, written with the global numpy state as upstream writes it
    np.random.seed(42)
    used: list[str] = []
    for _ in range(4):
        while (w := str(np.random.choice(REMAP_VOCAB))) in used:
            pass
        used.append(w)
    assert used == remap_words(4)


def _ex(name, row):
    return get_dataset(name).format_example(row)


def test_sst2_format():
    row = {"idx": 3, "sentence": "a gorgeous film ", "label": 1}
    assert _ex("sst2", row) == {"prompt": "Text:a gorgeous film \nLabel:", "answer": "1", "label": 1, "gold": "1"}
    assert _ex("sst2_remap", row)["answer"] == "Friday"
    assert _ex("sst2_remap", dict(row, label=0))["gold"] == "apple"


def test_finsen_poems_agnews_format():
    assert _ex("finsen", {"sentence": "Sales rose .", "label": 1})["prompt"] == "Text:Sales rose .\nLabel:"
    assert _ex("poems", {"id": 0, "verse_text": "o sweet rose", "label": 0}) == {
        "prompt": "Text:o sweet rose\nLabel:",
        "answer": "0",
        "label": 0,
        "gold": "0",
    }
    ex = _ex("agnews", {"text": "Stocks fall", "label": 2})
    assert (ex["prompt"], ex["answer"], ex["label"]) == ("Text:Stocks fall\nLabel:", "2", 2)
    assert _ex("agnews_remap", {"text": "x", "label": 3})["answer"] == "Saturday"


def test_bbcnews_cut_and_label_map():
    text = "Apple launches " + "new phone " * 40
    ex = _ex("bbcnews", {"text": text, "label": 0, "label_text": "tech"})
    assert ex["prompt"] == f"Text:{bbc_cut(text)}\nLabel:"
    body = ex["prompt"][len("Text:") : -len("\nLabel:")]
    assert len(body) <= 256 and text.startswith(body) and not body.endswith(" ")
    # tech->3, business->2, sport->1, entertainment->0, politics->0 (agnews label space)
    got = [_ex("bbcnews", {"text": "a b c", "label": lab, "label_text": ""})["label"] for lab in range(5)]
    assert got == [3, 2, 1, 0, 0]
    assert bbc_cut("short text here") == "short text"  # upstream always drops the last word


def test_strategytf_format():
    row = hub_rows.strategyqa(2)[1]  # answer False
    assert _ex("strategytf", row) == {"prompt": "Question:Is 1 even?\nAnswer:", "answer": "0", "label": 0, "gold": "0"}
    assert _ex("strategytf", hub_rows.strategyqa(1)[0])["answer"] == "1"


def test_qasc_format_and_remap():
    row = hub_rows.qasc(3)[2]  # answerKey C
    ex = _ex("qasc", row)
    choices = "".join(f"[{j}]opt{j}-2\n" for j in range(8))
    assert ex["prompt"] == f"Question:What does 2 do?\nChoices:\n{choices}\nAnswer:"
    assert (ex["answer"], ex["label"]) == ("2", 2)
    exr = _ex("qasc_remap", row)
    assert exr["prompt"].startswith(
        "Question:What does 2 do?\nChoices:\n[apple]opt0-2\n[Friday]opt1-2\n[banana]opt2-2"
    )
    assert exr["prompt"].endswith("[Monday]opt7-2\n\nAnswer:")
    assert exr["answer"] == "banana" and exr["label"] == 2


def test_sciq_format_matches_upstream_option_stream():
    rows = hub_rows.sciq(6)
    train, val = [dict(r) for r in rows[:4]], [dict(r) for r in rows[4:]]
    spec = get_dataset("sciq_remap")
    sciq_preprocess(train, val, spec)
    # upstream: np.random.seed(42); remap draw (4 labels); then np.random.shuffle per row, train then val
    np.random.seed(42)
    used: list[str] = []
    for _ in range(4):
        while (w := str(np.random.choice(REMAP_VOCAB))) in used:
            pass
        used.append(w)
    for row in [*train, *val]:
        opts = [row["distractor1"], row["distractor2"], row["distractor3"], None]
        np.random.shuffle(opts)
        idx = opts.index(None)
        opts[idx] = row["correct_answer"]
        ex = spec.format_example(row)
        choices = "".join(f"[{used[i]}]{o}\n" for i, o in enumerate(opts))
        assert ex["prompt"] == f"Question:{row['question']}\nChoices:\n{choices}\nAnswer:"
        assert ex["answer"] == used[idx] and ex["label"] == idx
    # a raw row (no preprocess) still formats, with the correct answer among the choices
    ex = get_dataset("sciq").format_example(rows[0])
    assert f"[{ex['answer']}]right-0\n" in ex["prompt"]


def test_gsm8k_family_format():
    row = hub_rows.gsm8k(1)[0]
    ex = _ex("gsm8k", row)
    assert ex == {
        "prompt": "Question:Tom has 0 apples and buys 2. How many?\nAnswer:",
        "answer": row["answer"],
        "label": None,
        "gold": "2",
    }
    exs = _ex("gsm8ks", hub_rows.gsm_symbolic(2)[1])
    assert exs["gold"] == "1001" and exs["answer"].endswith("#### 1,001")
    assert get_dataset("gsm8k").max_new_tokens == 200 and get_dataset("gsm8k").stop_strings == ("\n\n",)


def test_hmath_format():
    row = hub_rows.hmath(4)[3]
    ex = _ex("hmath_algebra", row)
    assert ex["prompt"] == "Question:Solve $x + 3 = 2x$.\nAnswer:"
    assert ex["answer"] == row["solution"] and ex["gold"] == "3" and ex["label"] is None
    assert get_dataset("hmath_algebra").max_new_tokens == 400
    assert resolve("hmath", subset="geometry").name == "hmath_geometry"
    with pytest.raises(ActlabError, match="unknown subset 'algebr'"):
        resolve("hmath", subset="algebr")


def test_sciqa_format():
    row = hub_rows.sciq(1)[0]
    ex = _ex("sciqa", row)
    assert ex == {
        "prompt": "Question:What is thing 0?\nAnswer:",
        "answer": "Support for 0.\n#### right-0",
        "label": None,
        "gold": "right-0",
    }


def test_squad_hh_keep_raw_rows():
    ex = _ex("squad", hub_rows.squad(1)[0])
    assert ex["answer"] == "Paris" and ex["row"]["answers"]["text"] == ["Paris"] and ex["row"]["context"]
    ex = _ex("hh_rlhf", hub_rows.hh(1)[0])
    assert ex["prompt"].endswith("Assistant:") and ex["answer"] == " hello" and ex["row"]["rejected"] == " go away"


def test_synthetic_formats_like_their_namesakes():
    assert _ex("syn_sst2", {"sentence": "good", "label": 1}) == _ex("sst2", {"sentence": "good", "label": 1, "idx": 0})
    assert _ex("syn_agnews", {"text": "t", "label": 3})["prompt"] == "Text:t\nLabel:"
    assert _ex("syn_agnews_remap", {"text": "t", "label": 3})["answer"] == "Saturday"
    row = hub_rows.gsm8k(1)[0]
    assert _ex("syn_gsm8k", row) == _ex("gsm8k", row)
    ex = _ex("syn_passages", {"text": "A passage."})
    assert (ex["prompt"], ex["answer"], ex["row"]) == ("A passage.", "", {"text": "A passage."})
    row = {
        "person": "Alice",
        "landmark": "the Louvre",
        "prompt_a": "Alice is at the Louvre.",
        "prompt_b": "Which country is Alice in? Answer:",
        "answer": "France",
    }
    row["skyline"] = row["prompt_a"] + " " + row["prompt_b"]
    ex = _ex("syn_countries", row)
    assert ex["prompt"].endswith("Answer:") and ex["answer"] == "France" and ex["row"]["prompt_b"] == row["prompt_b"]


def test_build_icl_prompt():
    d = [{"prompt": "Text:a\nLabel:", "answer": "1"}, {"prompt": "Text:b\nLabel:", "answer": "0"}]
    q = {"prompt": "Text:c\nLabel:", "answer": "1"}
    assert build_icl_prompt(d, q) == "Text:a\nLabel:1\n\nText:b\nLabel:0\n\nText:c\nLabel:"
    assert build_icl_prompt([], q) == "Text:c\nLabel:"


def test_unknown_and_unsupported():
    with pytest.raises(ActlabError) as e:
        get_dataset("sst")
    msg = str(e.value)
    assert "unknown dataset 'sst'" in msg and "sst2" in msg and "gsm8k" in msg and "\n" not in msg
    with pytest.raises(ActlabError, match="remap' is not supported for dataset 'gsm8k'"):
        resolve("gsm8k", "remap")
    with pytest.raises(ActlabError, match="unknown label_template"):
        resolve("sst2", "weird")
