"""ICAE data: pretraining texts, SQuAD rows, RepoQA tasks, agent trajectories (hub loaders + offline stand-ins).

Offline (``data_source: synthetic``) the zoo's synthetic passages and questions stand in:

* pretraining: ``syn_passages`` texts;
* QA: ``syn_squad`` rows (rajpurkar/squad schema);
* RepoQA: a "repository" of 4–6 passages (the needles); the description is the needle's first sentence and the
  answer the whole needle (retrieve-and-reproduce, scored by RepoQA's similarity and pass@0.8);
* trajectories: 3 turns of ``tool`` (a passage, compressed) → ``user`` (a question, raw) → ``assistant`` (the answer).

Hub loaders (for users with a network): ``rajpurkar/squad``, a hub text set for pretraining (column ``text``),
``SWE-bench/SWE-smith-trajectories`` (column ``messages``), and the official RepoQA JSON release (a local file).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from actlab.core.errors import ActlabError
from actlab.core.io import atomic_write_jsonl, read_jsonl
from actlab.data.sources import load_hub, load_rows
from actlab.icae.config import ICAEConfig

QA_PROMPT = "\nQuestion: {question}\nAnswer:"
TRAJ_HUB = "SWE-bench/SWE-smith-trajectories"


def data_dir(cfg: ICAEConfig) -> Path:
    return Path(cfg.data_dir) if cfg.data_dir else Path(cfg.output_dir) / "data"


def _hub(path: str, split: str, config: str | None = None):
    return load_hub(path, config, split, hint="use data_source: synthetic offline")


# ------------------------------------------------------------------------------------------------ pretraining
def pretrain_texts(cfg: ICAEConfig, split: str, n: int) -> list[str]:
    if cfg.pretrain_dataset == "syn_passages":
        return [r["text"] for r in load_rows("syn_passages", split, n, cfg.seed)]
    if cfg.data_source != "hub":
        raise ActlabError(
            f"pretrain_dataset {cfg.pretrain_dataset!r} needs data_source: hub "
            "(offline the only choice is syn_passages)"
        )
    ds = _hub(cfg.pretrain_dataset, "train")
    if "text" not in ds.column_names:
        raise ActlabError(f"hub set {cfg.pretrain_dataset!r} has no 'text' column (it has {ds.column_names})")
    n_val = cfg.num_eval_samples
    idx = range(n_val, n_val + n) if split == "train" else range(min(n, n_val))
    return [ds[i]["text"] for i in idx if i < len(ds)]


def prepare_pretrain(cfg: ICAEConfig) -> dict[str, Path]:
    """Write ``pretrain_train.jsonl`` / ``pretrain_val.jsonl`` (``{"text"}`` rows) under the data dir."""
    d = data_dir(cfg)
    out = {}
    for split, n in (("train", cfg.num_train_samples), ("test", cfg.num_eval_samples)):
        rows = [{"text": t} for t in pretrain_texts(cfg, split, n) if t and t.strip()]
        out[split] = atomic_write_jsonl(d / f"pretrain_{'train' if split == 'train' else 'val'}.jsonl", rows)
    return out


def load_pretrain(cfg: ICAEConfig, split: str = "train") -> list[str]:
    p = data_dir(cfg) / f"pretrain_{split}.jsonl"
    rows = read_jsonl(p)
    if not rows:
        raise ActlabError(f"no pretraining data at {p}; run: actlab icae prepare-pretrain --config_path ...")
    return [r["text"] for r in rows]


def ae_lm_sample(ids: list[int], cfg: ICAEConfig, rng: random.Random) -> dict:
    """One pretraining sample: AE with prob ``1-lm_ratio`` else LM (falls back to AE for short texts)."""
    ids = ids[: cfg.max_seq_len]
    if rng.random() < cfg.lm_ratio and len(ids) - cfg.min_tokens_for_lm >= max(4, len(ids) // 3):
        c = rng.randint(max(4, len(ids) // 3), len(ids) - cfg.min_tokens_for_lm)
        return {"kind": "LM", "context": ids[:c], "target": ids[c:], "skip": cfg.leave_tokens_for_lm}
    return {"kind": "AE", "context": ids, "target": ids, "skip": 0}


# ------------------------------------------------------------------------------------------------------- SQuAD
def squad_rows(cfg: ICAEConfig, split: str, n: int) -> list[dict]:
    """rajpurkar/squad-schema rows: ``{id, title, context, question, answers{text, answer_start}}``."""
    if cfg.data_source == "synthetic":
        return load_rows("syn_squad", "train" if split == "train" else "test", n, cfg.seed)
    from actlab.data.registry import get_dataset

    spec = get_dataset("squad")
    ds = _hub(spec.hub_path, "train" if split == "train" else "validation")
    return [dict(ds[i]) for i in range(min(n, len(ds)))]


def qa_prompt(row: dict) -> str:
    return QA_PROMPT.format(question=row["question"])


# ------------------------------------------------------------------------------------------------------ RepoQA
def repoqa_tasks(cfg: ICAEConfig, split: str, n: int) -> list[dict]:
    """``{context, description, gold, needles}`` tasks (see the module doc)."""
    if cfg.data_source == "hub":
        if not cfg.data_dir:
            raise ActlabError("RepoQA from the official release needs data_dir pointing at the repoqa-*.json file")
        return load_repoqa_release(cfg.data_dir, n)
    texts = [
        r["text"] for r in load_rows("syn_passages", "train" if split == "train" else "test", n * 5, cfg.seed + 7)
    ]
    rng = random.Random(cfg.seed + (0 if split == "train" else 1))
    tasks, i = [], 0
    while len(tasks) < n and i + 6 <= len(texts):
        k = rng.randint(3, 5)
        needles = texts[i : i + k]
        i += k
        gold = rng.choice(needles)
        tasks.append(
            {"context": "\n".join(needles), "description": gold.split(".")[0] + ".", "gold": gold, "needles": needles}
        )
    return tasks


def repoqa_prompt(task: dict) -> str:
    return f"\nDescription: {task['description']}\nPassage:"


def load_repoqa_release(path: str, n: int) -> list[dict]:
    """Tasks from the official RepoQA JSON (``{lang: [{repo, content{path: code}, needles[...]}]}``)."""
    p = Path(path)
    if p.is_dir():
        cands = sorted(p.glob("repoqa*.json"))
        if not cands:
            raise ActlabError(f"no repoqa*.json in {p}")
        p = cands[-1]
    data = json.loads(p.read_text(encoding="utf-8"))
    tasks = []
    for repos in data.values():
        for repo in repos:
            for nd in repo.get("needles", []):
                code = repo["content"][nd["path"]].splitlines()
                gold = "\n".join(code[nd["start_line"] : nd["end_line"] + 1])
                others = [
                    "\n".join(repo["content"][o["path"]].splitlines()[o["start_line"] : o["end_line"] + 1])
                    for o in repo["needles"]
                ]
                tasks.append(
                    {"context": "\n".join(code), "description": nd["description"], "gold": gold, "needles": others}
                )
                if len(tasks) >= n:
                    return tasks
    return tasks


# ---------------------------------------------------------------------------------------------- trajectories
def trajectories(cfg: ICAEConfig, split: str, n: int, turns: int = 3) -> list[list[dict]]:
    """Trajectories as lists of ``{role, content}`` messages (tool/user/assistant)."""
    if cfg.data_source == "hub":
        ds = _hub(TRAJ_HUB, "train")
        out = []
        for i in range(min(n, len(ds))):
            msgs = ds[i]["messages"]
            out.append(json.loads(msgs) if isinstance(msgs, str) else list(msgs))
        return out
    rows = squad_rows(cfg, split, n * turns)
    out = []
    for t in range(n):
        msgs = []
        for r in rows[t * turns : (t + 1) * turns]:
            msgs += [
                {"role": "tool", "content": "\n" + r["context"]},
                {"role": "user", "content": qa_prompt(r)},
                {"role": "assistant", "content": " " + r["answers"]["text"][0]},
            ]
        out.append(msgs)
    return out
