"""Preference data for IAV: rows with ``prompt``/``chosen``/``rejected`` (Dahoas/full-hh-rlhf schema) → token tensors.

Sources: ``syn_hh`` (the zoo's synthetic preference set, offline), ``hh_rlhf`` / ``Dahoas/full-hh-rlhf`` (the hub), or a
local ``.json``/``.jsonl``/``.parquet`` file or a ``datasets.save_to_disk`` directory. Rows in the Anthropic/hh-rlhf
schema (``chosen``/``rejected`` full dialogs, no ``prompt``) are split at the last ``\\n\\nAssistant:``.

Layouts (``loss`` mode):
    corrected: ``[BOS] prompt | response [EOS]``, prompt kept to its last ``max_prompt_length`` tokens, response-only mask;
    faithful:  the public code's ``f"{prompt} {prompt + chosen}"`` (prompt twice), right-truncated, all tokens in the mask.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch

from actlab.core.errors import ActlabError
from actlab.data.sources import load_rows as load_data_rows

#: hub preference sets by name (``hh-rlhf`` is the spelling of the seed's ``train.sh``)
HUB_IDS = {
    "hh_rlhf": "Dahoas/full-hh-rlhf",
    "hh-rlhf": "Dahoas/full-hh-rlhf",
    "Dahoas/full-hh-rlhf": "Dahoas/full-hh-rlhf",
}
SYNTHETIC = ("syn_hh",)
REQUIRED = ("chosen", "rejected")


def _split_anthropic(text: str) -> tuple[str, str]:
    k = text.rfind("\n\nAssistant:")
    if k < 0:
        return "", text
    k += len("\n\nAssistant:")
    return text[:k], text[k:]


def normalise_rows(rows: list[dict], source: str) -> list[dict]:
    """Check the columns and return ``[{"prompt", "chosen", "rejected"}]`` (responses only)."""
    if not rows:
        raise ActlabError(f"dataset {source!r} has no rows")
    cols = set(rows[0])
    missing = [c for c in REQUIRED if c not in cols]
    if missing:
        raise ActlabError(
            f"dataset {source!r} lacks column(s) {', '.join(missing)} (has: {', '.join(sorted(cols))}); "
            "IAV needs prompt/chosen/rejected (Dahoas/full-hh-rlhf schema) or chosen/rejected dialogs"
        )
    out = []
    for r in rows:
        if "prompt" in r and r["prompt"] is not None:
            out.append({"prompt": str(r["prompt"]), "chosen": str(r["chosen"]), "rejected": str(r["rejected"])})
        else:  # Anthropic/hh-rlhf: full dialogs
            p, c = _split_anthropic(str(r["chosen"]))
            p2, rj = _split_anthropic(str(r["rejected"]))
            if p != p2:
                rj = str(r["rejected"])[len(p) :] if str(r["rejected"]).startswith(p) else rj
            out.append({"prompt": p, "chosen": c, "rejected": rj})
    return out


def _load_local(path: Path, split: str) -> list[dict]:
    import datasets

    if path.is_dir():
        ds = datasets.load_from_disk(str(path))
        if isinstance(ds, datasets.DatasetDict):
            if split not in ds:
                raise ActlabError(f"{path} has splits {', '.join(ds)}; no {split!r}")
            ds = ds[split]
        return list(ds)
    ext = path.suffix.lower()
    if ext in (".json", ".jsonl"):  # plain reads: no datasets cache, no progress bars
        from actlab.core.io import read_json, read_jsonl

        rows = read_jsonl(path) if ext == ".jsonl" else read_json(path)
        if isinstance(rows, dict) and split in rows:
            rows = rows[split]
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise ActlabError(f"{path}: expected a list of records with prompt/chosen/rejected")
        return rows
    kind = {".json": "json", ".jsonl": "json", ".parquet": "parquet", ".csv": "csv"}.get(ext)
    if kind is None:
        raise ActlabError(f"unsupported data file {path} (use .json, .jsonl, .parquet or .csv)")
    return list(datasets.load_dataset(kind, data_files=str(path), split="train"))


def load_rows(dataset: str, split: str = "train", n: int | None = None, seed: int = 0) -> list[dict]:
    """``n`` preference rows of ``dataset`` / ``split`` (first ``n`` in order for hub and local sets)."""
    if dataset in SYNTHETIC:
        rows = load_data_rows(dataset, split, n or 512, seed)
    elif Path(dataset).expanduser().exists():
        rows = _load_local(Path(dataset).expanduser(), split)
    elif dataset in HUB_IDS or dataset.count("/") == 1:
        rows = load_data_rows(HUB_IDS.get(dataset, dataset), split, n or None)
    else:
        from actlab.core.errors import unknown_choice

        raise unknown_choice(
            "preference dataset",
            dataset,
            [*SYNTHETIC, *HUB_IDS],
            hint="or a local .json/.jsonl/.parquet file, or a hub id org/name",
        )
    rows = rows[:n] if n else rows
    return normalise_rows(rows, dataset)


@dataclass
class Tokenized:
    """Fixed-length (``seq_length``) right-padded tensors of N pairs; ``resp`` marks the tokens the loss scores."""

    chosen_ids: torch.Tensor
    chosen_attn: torch.Tensor
    chosen_resp: torch.Tensor
    rejected_ids: torch.Tensor
    rejected_attn: torch.Tensor
    rejected_resp: torch.Tensor

    def __len__(self) -> int:
        return self.chosen_ids.shape[0]

    def side(self, name: str, idx, length: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        ids, attn, resp = (getattr(self, f"{name}_{k}")[idx] for k in ("ids", "attn", "resp"))
        if length is not None:
            ids, attn, resp = ids[:, :length], attn[:, :length], resp[:, :length]
        return ids, attn, resp

    def batch_length(self, idx) -> int:
        """The longest real sequence (either side) among rows ``idx``: batches are cut to it."""
        return int(max(self.chosen_attn[idx].sum(-1).max(), self.rejected_attn[idx].sum(-1).max()))

    def ids_hash(self) -> str:
        h = hashlib.sha256()
        for t in (self.chosen_ids, self.rejected_ids, self.chosen_resp, self.rejected_resp):
            h.update(t.to(torch.int32).contiguous().numpy().tobytes())
        return h.hexdigest()


def _encode_corrected(tok, prompt: str, response: str, seq_length: int, max_prompt_length: int):
    p = (
        tok(prompt)["input_ids"][-max_prompt_length:]
        if prompt
        else ([tok.bos_token_id] if tok.bos_token_id is not None else [])
    )
    r = tok(response, add_special_tokens=False)["input_ids"]
    if tok.eos_token_id is not None:
        r = r + [tok.eos_token_id]
    r = r[: seq_length - len(p)]
    return p + r, [0] * len(p) + [1] * len(r)


def _encode_faithful(tok, prompt: str, response: str, seq_length: int):
    text = f"{prompt} {prompt + response}"  # the public code: chosen := prompt+chosen, then f"{prompt} {chosen}"
    ids = tok(text)["input_ids"][:seq_length]
    return ids, [1] * len(ids)


def tokenize(rows: list[dict], tok, seq_length: int, max_prompt_length: int, loss: str = "corrected") -> Tokenized:
    pad = tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)
    out: dict[str, list] = {f"{s}_{k}": [] for s in ("chosen", "rejected") for k in ("ids", "attn", "resp")}
    for r in rows:
        for s in ("chosen", "rejected"):
            if loss == "faithful":
                ids, resp = _encode_faithful(tok, r["prompt"], r[s], seq_length)
                fill = tok.eos_token_id if tok.eos_token_id is not None else pad  # the public code pads with EOS
            else:
                ids, resp = _encode_corrected(tok, r["prompt"], r[s], seq_length, max_prompt_length)
                fill = pad
            n = len(ids)
            out[f"{s}_ids"].append(ids + [fill] * (seq_length - n))
            out[f"{s}_attn"].append([1] * n + [0] * (seq_length - n))
            out[f"{s}_resp"].append(resp + [0] * (seq_length - n))
    return Tokenized(**{k: torch.tensor(v, dtype=torch.long) for k, v in out.items()})
