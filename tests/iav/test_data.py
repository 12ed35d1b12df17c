"""Preference data: hub schemas (fixtures in Dahoas/full-hh-rlhf and Anthropic/hh-rlhf columns) and layouts."""

import json

import pytest

from actlab.core.errors import ActlabError
from actlab.iav.data import load_rows, tokenize


def test_dahoas_and_anthropic_schemas(tmp_path):
    dahoas = tmp_path / "dahoas.jsonl"
    dahoas.write_text(
        json.dumps({"prompt": "\n\nHuman: hi\n\nAssistant:", "response": " yes", "chosen": " yes", "rejected": " no"})
        + "\n"
    )
    assert load_rows(str(dahoas)) == [{"prompt": "\n\nHuman: hi\n\nAssistant:", "chosen": " yes", "rejected": " no"}]
    anthropic = tmp_path / "anthropic.json"
    anthropic.write_text(
        json.dumps(
            [
                {
                    "chosen": "\n\nHuman: a\n\nAssistant: b\n\nHuman: c\n\nAssistant: good",
                    "rejected": "\n\nHuman: a\n\nAssistant: b\n\nHuman: c\n\nAssistant: bad",
                }
            ]
        )
    )
    row = load_rows(str(anthropic))[0]
    assert (
        row["prompt"].endswith("\n\nHuman: c\n\nAssistant:") and row["chosen"] == " good" and row["rejected"] == " bad"
    )
    with pytest.raises(ActlabError, match="did you mean"):
        load_rows("syn_hhh")


def test_layouts(micro_tok):
    rows = [{"prompt": "the cat", "chosen": " is red", "rejected": " is blue"}]
    c = tokenize(rows, micro_tok, 16, 8, "corrected")
    n_p = len(micro_tok("the cat")["input_ids"])
    assert c.chosen_resp[0, :n_p].sum() == 0 and c.chosen_resp[0, n_p : n_p + 3].tolist() == [1, 1, 1]  # is red </s>
    assert c.chosen_ids[0, n_p + 2] == micro_tok.eos_token_id
    f = tokenize(rows, micro_tok, 16, 8, "faithful")
    ids = f.chosen_ids[0, : int(f.chosen_attn[0].sum())].tolist()
    assert micro_tok.decode(ids, skip_special_tokens=True).split().count("cat") == 2  # the prompt, twice
    assert f.chosen_resp.equal(f.chosen_attn)
