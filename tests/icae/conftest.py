import pytest
import torch


@pytest.fixture
def make_icae(micro_tok):
    """ICAE on a fresh micro Llama with a perturbed LoRA (so the encoder differs from the decoder)."""
    from actlab.core.testing import micro_model
    from actlab.icae.config import ICAEConfig
    from actlab.icae.model import ICAE

    def make(arch="llama", seed=0, perturb=True, **kw):
        opts = dict(fixed_mem_size=4, mean_compression_rate=2, lora_r=4, max_seq_len=200, seed=seed)
        opts.update(kw)
        icae = ICAE(micro_model(arch, micro_tok, seed=seed), micro_tok, ICAEConfig(**opts))
        if perturb:
            g = torch.Generator().manual_seed(seed + 1)
            with torch.no_grad():
                for n, p in icae.named_parameters():
                    if "lora_B" in n:
                        p.copy_(torch.randn(p.shape, generator=g) * 0.5)
        return icae.eval()

    return make


CONTEXTS = [
    "the cat is red and the dog is blue . alice has a book in paris",
    "bob is in rome",
    "one two three four five six seven eight nine ten one two three four five six seven eight nine ten",
    "yes",
]
PROMPTS = ["what is red ?", "where is bob ?", "how many are there ?", "who ?"]
