import pytest
import torch

from actlab.core.errors import ActlabError
from actlab.core.models import (
    encode,
    generate,
    load,
    next_token_logits,
    pick_dtype,
    position_ids_from_mask,
    prompt_offset,
    sequence_logprobs,
    short_name,
)
from actlab.core.testing import micro_model, micro_tokenizer

PROMPTS = ["the cat is on the", "one", "alice has three apple and bob has two apple . how many", "red blue green"]
CONTS = [" tree .", " two three", " apple", " cat"]


def _adapters(tok):
    from peft import IA3Config, LoraConfig, PrefixTuningConfig, PromptTuningConfig, get_peft_model

    cfgs = {
        "lora": LoraConfig(task_type="CAUSAL_LM", r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False),
        "ia3": IA3Config(
            task_type="CAUSAL_LM", target_modules=["k_proj", "v_proj", "down_proj"], feedforward_modules=["down_proj"]
        ),
        "prompt": PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=5),
        "prefix": PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=5),
    }
    out = {"none": micro_model("llama", tok), "gpt2": micro_model("gpt2", tok)}
    for name, cfg in cfgs.items():
        torch.manual_seed(1)
        m = get_peft_model(micro_model("llama", tok), cfg)
        if name == "ia3":  # IA3 starts at identity; perturb so the adapter matters
            with torch.no_grad():
                for n, p in m.named_parameters():
                    if "ia3_" in n:
                        p.add_(0.3 * torch.randn_like(p))
        m.eval()
        out[name] = m
    return out


@pytest.fixture(scope="module")
def adapted():
    tok = micro_tokenizer()
    return tok, _adapters(tok)


@pytest.mark.parametrize("kind", ["none", "gpt2", "lora", "ia3", "prompt", "prefix"])
def test_scoring_batched_equals_one_by_one(adapted, kind):
    tok, models = adapted
    model = models[kind]
    batched = next_token_logits(model, tok, PROMPTS, batch_size=4)
    single = torch.cat([next_token_logits(model, tok, [p]) for p in PROMPTS])
    torch.testing.assert_close(batched, single, rtol=1e-4, atol=1e-4)
    lp_b = sequence_logprobs(model, tok, PROMPTS, CONTS, batch_size=4)
    lp_s = [sequence_logprobs(model, tok, [p], [c])[0] for p, c in zip(PROMPTS, CONTS)]
    for a, b in zip(lp_b, lp_s):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kind", ["none", "gpt2", "lora", "prompt", "prefix"])
def test_generate_batched_equals_one_by_one(adapted, kind):
    tok, models = adapted
    model = models[kind]
    batched = generate(model, tok, PROMPTS, max_new_tokens=6, batch_size=4, return_ids=True)
    single = [generate(model, tok, [p], max_new_tokens=6, return_ids=True)[0] for p in PROMPTS]
    assert batched == single


def test_next_token_logits_match_a_manual_forward(adapted):
    tok, models = adapted
    for kind in ("none", "prompt"):
        m = models[kind]
        ids = tok(PROMPTS[0], return_tensors="pt")["input_ids"]
        with torch.no_grad():
            logits = m(input_ids=ids).logits[0, -1]
        torch.testing.assert_close(next_token_logits(m, tok, [PROMPTS[0]])[0], logits.float(), rtol=1e-5, atol=1e-5)
    assert prompt_offset(models["prompt"]) == 5 and prompt_offset(models["prefix"]) == 0
    assert prompt_offset(models["none"]) == 0


def test_generate_stops_at_stop_strings(micro_tok):
    model = micro_model("llama", micro_tok)
    full = generate(model, micro_tok, [PROMPTS[0]], max_new_tokens=12)[0]
    assert full
    words = full.split()
    stop = words[min(2, len(words) - 1)]
    cut = generate(model, micro_tok, [PROMPTS[0]], max_new_tokens=12, stop_strings=[stop])[0]
    assert stop not in cut and full.startswith(cut.rstrip())


def test_position_ids_from_mask():
    left = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    right = torch.tensor([[1, 1, 1, 0, 0]])
    assert position_ids_from_mask(left).tolist() == [[0, 0, 0, 1, 2], [0, 1, 2, 3, 4]]
    assert position_ids_from_mask(right).tolist() == [[0, 1, 2, 2, 2]]


def test_encode_left_and_right(micro_tok):
    left = encode(micro_tok, ["one", "one two three"], side="left")
    right = encode(micro_tok, ["one", "one two three"], side="right")
    assert left["attention_mask"][0].tolist() == [0, 0, 1, 1]
    assert right["attention_mask"][0].tolist() == [1, 1, 0, 0]
    assert micro_tok.padding_side == "left"  # restored


def test_dtype_choice(monkeypatch):
    assert pick_dtype(torch.device("cpu")) == torch.float32
    assert pick_dtype(torch.device("mps")) == torch.float32
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert pick_dtype(torch.device("cuda")) == torch.bfloat16
    assert pick_dtype(torch.device("cuda"), "fp32") == torch.float32
    with pytest.raises(ActlabError, match="unknown dtype 'fp8'"):
        pick_dtype(torch.device("cpu"), "fp8")


def test_short_name():
    assert short_name("meta-llama/Llama-3.2-1B") == "Llama-3.2-1B"
    assert short_name("Qwen/Qwen3-4B-Base") == "Qwen3-4B-Base"
    assert short_name("tiny") == "tiny"
    assert short_name("/tmp/x/my-model/") == "my-model"


@pytest.mark.parametrize("arch_name", ["llama", "qwen3", "gpt2", "mistral", "gemma", "qwen2"])
def test_load_local_dir(tmp_path, arch_name):
    tok = micro_tokenizer(padding_side="right")
    model = micro_model(arch_name, tok)
    d = tmp_path / arch_name
    model.save_pretrained(d)
    tok.pad_token = None  # as many hub tokenizers ship: no pad token, right padding
    tok.save_pretrained(d)
    m2, t2 = load(str(d))
    assert t2.padding_side == "left" and t2.pad_token is not None
    assert not m2.training and m2.dtype == torch.float32
    assert m2.config.pad_token_id is not None
    ids = t2("the cat", return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(m2(**ids).logits, model(**ids).logits)
    out = generate(m2, t2, ["the cat", "one two three four"], max_new_tokens=3)
    assert len(out) == 2


def test_load_bad_inputs(tmp_path):
    with pytest.raises(ActlabError, match="model path '/no/such/dir' does not exist"):
        load("/no/such/dir")
    with pytest.raises(ActlabError, match=r"unknown model 'tinyy'.*valid: .*tiny"):
        load("tinyy")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ActlabError, match="could not load model"):
        load(str(empty))
