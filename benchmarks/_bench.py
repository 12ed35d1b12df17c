"""Shared helpers of the peer benchmarks: interleaved timing, medians with spread, machine line, peer checks.

Not a benchmark itself. Every ``peers_*.py`` script imports it from its own folder (``python benchmarks/X.py``
puts ``benchmarks/`` first on ``sys.path``).
"""

from __future__ import annotations

import importlib
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable

os.environ.setdefault("ACTLAB_QUIET", "1")
os.environ.setdefault("TQDM_DISABLE", "1")  # the peers' progress bars (read when tqdm is first imported)


def peer(module: str, package: str):
    """Import a peer package, or print one line saying it is missing and exit 0 (the benchmark is skipped)."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        print(
            f"SKIP: {package} is not installed ({e.__class__.__name__}: {e}); "
            f"install the extra: pip install -e '.[bench]' -c constraints.txt"
        )
        sys.exit(0)


def have(module: str) -> bool:
    try:
        importlib.import_module(module)
        return True
    except ImportError:
        return False


def version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as v

    try:
        return v(dist)
    except PackageNotFoundError:
        return "not installed"


def machine() -> str:
    """One line: CPU model, logical CPUs, load average, torch version and threads."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"{cpu}, {os.cpu_count()} CPUs, load {load:.1f}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} thread(s), {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
    )


def interleave(
    fns: dict[str, Callable[[], object]], reps: int, warmup: int = 1, clock: Callable[[], float] = time.perf_counter
) -> dict[str, list[float]]:
    """Run every function ``reps`` times, round-robin (so machine load hits all alike); seconds per call.

    ``clock=time.process_time`` measures the CPU time the process got (all its threads) instead of wall time: on a
    shared machine that leaves out the time spent waiting for a core."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(reps):
        for k, fn in fns.items():
            t = clock()
            fn()
            times[k].append(clock() - t)
    return times


def med(xs: list[float]) -> float:
    return statistics.median(xs)


def spread(xs: list[float]) -> str:
    """``median [min–max]`` in ms, for tables."""
    return f"{med(xs) * 1e3:.2f} ms [{min(xs) * 1e3:.2f}–{max(xs) * 1e3:.2f}]"


def ratio_spread(num: list[float], den: list[float]) -> tuple[float, float, float]:
    """Ratio of medians and the min–max of the per-repetition ratios (the repetitions are paired: interleaved)."""
    per = [a / b for a, b in zip(num, den)]
    return med(num) / med(den), min(per), max(per)


def fmt_ratio(r: tuple[float, float, float]) -> str:
    return f"{r[0]:.3f} [{r[1]:.3f}–{r[2]:.3f}]"


def dump(path: str | None, res: dict) -> None:
    if path:
        with open(path, "w") as f:
            json.dump(res, f, indent=2, default=str)


def load_model(name: str, layers: int = 4, hidden: int = 128, max_pos: int = 2048):
    """``(model, tokenizer, label)``: ``auto`` = the zoo's ``tiny`` when built, else ``random-tiny``.

    ``random-tiny`` is a random Llama of ``tiny``'s shape (4 layers, h128, 4/2 GQA heads, MLP 256, vocab 2048, tied
    embeddings) with the micro word-level tokenizer; its weights are scaled ×4 (as ``actlab.core.testing`` does) so
    that predictions are not near-ties. Speed depends on the shape, not on the weights.
    """
    import torch

    if name == "auto":
        from actlab.zoo.build import is_built

        name = "tiny" if is_built("tiny") else "random-tiny"
    if name != "random-tiny":
        from actlab.core.models import load

        model, tok = load(name, device="cpu")
        return model, tok, name
    from transformers import LlamaConfig, LlamaForCausalLM

    from actlab.core.models import prepare_tokenizer
    from actlab.core.testing import micro_tokenizer

    tok = micro_tokenizer()
    cfg = LlamaConfig(
        vocab_size=2048,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=max_pos,
        tie_word_embeddings=True,
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2:
                p.mul_(4.0)
    return model, prepare_tokenizer(tok, model), "random-tiny"
