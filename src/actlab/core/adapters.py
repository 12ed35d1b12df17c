"""PEFT adapters by family — LoRA, (IA)³, prompt tuning, prefix tuning — on any architecture.

>>> cfg = peft_config("lora", model, modules="qko", r=8, alpha=8)       # doctest: +SKIP
>>> peft_model = attach(model, cfg)                                      # doctest: +SKIP

**Targets** (``modules``) are one of

* role letters: ``q k v o`` (attention query / key / value / output projections), ``g u d`` (MLP gate / up / down);
  ``all`` = every role. Each role resolves to the module(s) that play it in *this* model, found from the layer
  structure (:func:`roles`): a fused projection serves every role it holds (``k`` on Phi-3 is ``qkv_proj``, on
  GPT-NeoX/Falcon ``query_key_value``, on GPT-2 ``c_attn``; ``g`` or ``u`` on Phi-3 is ``gate_up_proj``); MoE experts'
  fused weights (Mixtral, Qwen3-MoE) are LoRA ``target_parameters``. A role the model lacks is an error naming the
  roles it has.
* ``all-linear``: every linear module but the output head (PEFT's definition), plus MoE expert weights for LoRA;
* an explicit module list (``"query_key_value,dense"`` or a Python list), each name checked against the model.

:func:`adapted_modules` lists what an attached adapter really wraps (written into run configs).

* (IA)³ uses ``target_modules == feedforward_modules`` (upstream IA2's choice), so PEFT scales each module's input.
* prompt tuning: RANDOM init (upstream), virtual tokens as wide as the model's *input embeddings* (OPT-350m: 512,
  not its hidden 1024); prefix tuning: PEFT defaults (no projection), the prefix sized from the model's real KV cache
  (kv heads × head size per layer: multi-query Falcon, grouped-query Llama, Gemma's head_dim).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn

from actlab.core import arch
from actlab.core.errors import ActlabError, unknown_choice

FAMILIES = ("lora", "ia3", "prompt", "prefix")
# role letter -> the Llama name, for messages; the real modules are resolved per model by roles()
LETTERS = {
    "q": "q_proj",
    "k": "k_proj",
    "v": "v_proj",
    "o": "o_proj",
    "g": "gate_proj",
    "u": "up_proj",
    "d": "down_proj",
}
ALL_ROLES = "".join(LETTERS)
# leaf names per role, across HF decoders; a fused module serves several roles
_ATTN_ROLES: dict[str, tuple[str, ...]] = {
    "q": ("q_proj", "query", "q", "wq", "q_attn"),
    "k": ("k_proj", "key", "k", "wk"),
    "v": ("v_proj", "value", "v", "wv"),
    "qkv": ("qkv_proj", "query_key_value", "c_attn", "wqkv", "w_pack", "qkv", "in_proj", "qkv_proj_fused"),
    "kv": ("kv_proj", "c_attn_kv"),
    "o": ("o_proj", "out_proj", "dense", "c_proj", "wo", "o", "out", "proj"),
}
_MLP_ROLES: dict[str, tuple[str, ...]] = {
    "g": ("gate_proj", "w1", "wi_0", "gate_up_proj_gate"),
    "u": ("up_proj", "fc1", "fc_in", "c_fc", "dense_h_to_4h", "w3", "wi_1", "wi", "linear_fc1"),
    "gu": ("gate_up_proj", "w13", "gate_up"),
    "d": ("down_proj", "fc2", "fc_out", "c_proj", "dense_4h_to_h", "w2", "wo", "linear_fc2"),
}
_ROUTERS = ("gate", "router", "shared_expert_gate", "w_gate")


def _is_linear(mod: nn.Module) -> bool:
    return isinstance(mod, nn.Linear) or type(mod).__name__ == "Conv1D"


def _role_of(leaf: str, table: dict[str, tuple[str, ...]]) -> str | None:
    leaf = leaf.lower()
    for role, names in table.items():
        if leaf in names:
            return role
    return None


@dataclass
class Roles:
    """What plays each role in a model: layer-relative module paths (``self_attn.q_proj``) and MoE parameters."""

    modules: dict[str, list[str]] = field(default_factory=dict)  # role letter -> layer-relative module paths
    params: dict[str, list[str]] = field(default_factory=dict)  # role letter -> layer-relative 3-D parameters
    linears: list[str] = field(default_factory=list)  # every layer-relative linear (incl. routers)

    def have(self) -> str:
        return "".join(r for r in ALL_ROLES if self.modules.get(r) or self.params.get(r))


def roles(model: nn.Module) -> Roles:
    """Resolve the roles of ``model``'s decoder layers from the modules they hold (every layer is read)."""
    lay = arch.layout(model)
    out = Roles()
    for layer in arch.layers(model):
        for name, mod in layer.named_modules():
            if not name:
                continue
            top = name.split(".", 1)[0]
            in_attn = lay.attn is not None and top == lay.attn
            in_mlp = (lay.mlp_module and top == lay.mlp) or (not lay.mlp_module and "." not in name and not in_attn)
            if _is_linear(mod):
                if name not in out.linears:
                    out.linears.append(name)
                leaf = name.rsplit(".", 1)[-1]
                if in_attn:
                    r = _role_of(leaf, _ATTN_ROLES)
                elif in_mlp and leaf not in _ROUTERS:
                    r = _role_of(leaf, _MLP_ROLES)
                else:
                    r = None
                for letter in {"qkv": "qkv", "kv": "kv", "gu": "gu"}.get(r, r or ""):
                    lst = out.modules.setdefault(letter, [])
                    if name not in lst:
                        lst.append(name)
            if in_mlp and lay.mlp_module:  # MoE experts kept as fused 3-D weights (transformers 5)
                for pname, p in mod.named_parameters(recurse=False):
                    r = _role_of(pname, _MLP_ROLES) if p.dim() == 3 else None
                    for letter in {"gu": "gu"}.get(r, r or ""):
                        lst = out.params.setdefault(letter, [])
                        if f"{name}.{pname}" not in lst:
                            lst.append(f"{name}.{pname}")
    if lay.attn is not None and not any(out.modules.get(c) for c in "qkvo"):
        # unknown attention naming: its linears in order are the projections; the last one writes the output
        names = [n for n in out.linears if n.split(".", 1)[0] == lay.attn]
        if names:
            out.modules["o"] = [names[-1]]
            for c in "qkv":
                out.modules[c] = names[:-1]
    return out


def _suffixes(model: nn.Module, rel: list[str]) -> list[str]:
    """PEFT ``target_modules`` names for layer-relative paths: the leaf name where it is unambiguous in the model
    (``q_proj``), else the shortest unambiguous dotted suffix (``attn.c_proj`` vs ``mlp.c_proj`` in GPT-2)."""
    base = arch.unwrap(model)
    lay = arch.layout(model)
    all_names = [n for n, m in base.named_modules() if _is_linear(m)]
    layer_pat = re.compile(rf"^{re.escape(lay.layers)}\.\d+\.")
    wanted = {n for n in all_names if layer_pat.sub("", n) in rel and layer_pat.match(n)}
    out = []
    for r in rel:
        parts = r.split(".")
        for k in range(1, len(parts) + 1):
            suf = ".".join(parts[-k:])
            if any(p.isdigit() for p in parts[-k:]):
                suf = None
                break
            hits = {n for n in all_names if n == suf or n.endswith("." + suf)}
            if hits <= wanted:
                break
        else:
            suf = None
        if suf is None:  # numbered containers (expert lists): name every module
            out.extend(sorted(n for n in wanted if layer_pat.sub("", n) == r))
        elif suf not in out:
            out.append(suf)
    return out


@dataclass
class Targets:
    """Resolved adapter targets: PEFT ``target_modules`` names and (LoRA only) ``target_parameters``."""

    modules: list[str]
    parameters: list[str]
    spec: str


def _spec_kind(spec) -> str:
    if isinstance(spec, (list, tuple)):
        return "list"
    if spec in ("all", "all-linear"):
        return spec
    if isinstance(spec, str) and spec and all(c in LETTERS for c in spec):
        return "roles"
    return "list"


def check_target_spec(option: str, spec) -> str | list[str]:
    """Syntax of a target spec (no model needed): role letters, ``all``, ``all-linear`` or module names."""
    kind = _spec_kind(spec)
    if kind == "roles" and len(set(spec)) != len(spec):
        raise ActlabError(f"bad {option} {spec!r}: a role letter is repeated; use each of {ALL_ROLES} at most once")
    if kind == "list":
        names = list(spec) if isinstance(spec, (list, tuple)) else [x.strip() for x in str(spec).split(",")]
        if not names or not all(n and re.fullmatch(r"[A-Za-z_][\w.]*", n) for n in names):
            raise ActlabError(
                f"bad {option} {spec!r}; use letters of {ALL_ROLES} "
                f"({', '.join(f'{k}={v}' for k, v in LETTERS.items())}), all, all-linear, or a "
                "comma-separated list of module names (e.g. query_key_value,dense)"
            )
    return spec


def resolve_targets(model: nn.Module, spec, option: str = "--lora_type", family: str = "lora") -> Targets:
    """The modules (and MoE parameters) that ``spec`` names in ``model``; anything missing is a one-line error."""
    check_target_spec(option, spec)
    kind = _spec_kind(spec)
    mt = arch.model_type(model)
    rs = roles(model)
    params: list[str] = []
    if kind == "list":
        names = list(spec) if isinstance(spec, (list, tuple)) else [x.strip() for x in str(spec).split(",")]
        base = arch.unwrap(model)
        have = [n for n, m in base.named_modules() if _is_linear(m)]
        missing = [x for x in names if not any(h == x or h.endswith("." + x) for h in have)]
        if missing:
            leaves = sorted({h.rsplit(".", 1)[-1] for h in have})
            raise ActlabError(
                f"{option} names {', '.join(missing)}, which {mt} does not have; its linear modules "
                f"are: {', '.join(leaves)}"
            )
        return Targets(names, [], str(spec))
    if kind == "all-linear":
        rel = list(rs.linears)
        params = sorted({p for ps in rs.params.values() for p in ps})
    else:
        letters = ALL_ROLES if kind == "all" else spec
        missing = [c for c in letters if not rs.modules.get(c) and not rs.params.get(c)]
        if kind == "all":
            letters = "".join(c for c in letters if c not in missing)
            missing = []
        if missing:
            raise ActlabError(
                f"{option} {spec!r}: {mt} has no module for role {', '.join(missing)}; its roles are "
                f"{rs.have() or 'none'} ({_describe(rs)})"
            )
        rel = []
        for c in letters:
            for n in rs.modules.get(c, []):
                if n not in rel:
                    rel.append(n)
            for p in rs.params.get(c, []):
                if p not in params:
                    params.append(p)
    if params and family != "lora":
        moe = "".join(c for c in ALL_ROLES if rs.params.get(c))
        ok = "".join(c for c in ALL_ROLES if rs.modules.get(c) and not rs.params.get(c))
        raise ActlabError(
            f"{option} {spec!r}: in {mt} roles {moe} are the MoE experts' fused weights "
            f"({', '.join(params)}), which PEFT's {family} cannot adapt; use roles of {ok}"
        )
    return Targets(_suffixes(model, rel) if rel else [], params, str(spec))


def _describe(rs: Roles) -> str:
    out = []
    for c in ALL_ROLES:
        got = rs.modules.get(c, []) + rs.params.get(c, [])
        if got:
            out.append(f"{c}={'+'.join(x.rsplit('.', 1)[-1] for x in got)}")
    return ", ".join(out)


def role_table(model: nn.Module) -> dict[str, list[str]]:
    """``{role letter: [layer-relative module or parameter paths]}`` of ``model`` (for docs and run configs)."""
    rs = roles(model)
    return {c: rs.modules.get(c, []) + rs.params.get(c, []) for c in ALL_ROLES if c in rs.have()}


def module_names(modules: str, model: nn.Module | None = None) -> list[str]:
    """Target names of ``modules``: resolved in ``model`` when given, else the Llama names of the role letters."""
    if model is not None:
        return resolve_targets(model, modules).modules
    letters = ALL_ROLES if modules == "all" else modules
    bad = [c for c in letters if c not in LETTERS]
    if not letters or bad:
        raise ActlabError(
            f"bad module type {modules!r}; use letters of {ALL_ROLES} "
            f"({', '.join(f'{k}={v}' for k, v in LETTERS.items())}) or all"
        )
    return [LETTERS[c] for c in letters]


def linear_suffixes(model: nn.Module) -> set[str]:
    """The last path component of every ``nn.Linear`` (or HF Conv1D) in the model."""
    return {name.rsplit(".", 1)[-1] for name, mod in model.named_modules() if _is_linear(mod)}


def check_modules(model: nn.Module, modules, kind: str) -> list[str]:
    """PEFT target-module names for ``modules`` in ``model`` (each must exist, else a one-line error)."""
    return resolve_targets(model, modules, kind).modules


def default_lora_targets(model: nn.Module) -> Targets:
    """LoRA targets when the user names none: PEFT's default for the model type where the model has those
    modules, else the query and value roles (``qv``, PEFT's usual choice) resolved in the model."""
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as PEFT_DEFAULTS

    names = PEFT_DEFAULTS.get(arch.model_type(model))
    if isinstance(names, list):
        have = linear_suffixes(arch.unwrap(model))
        if names and all(n in have for n in names):
            return Targets(list(names), [], "peft-default")
    return resolve_targets(model, "qv", "lora_target_modules")


def lora_targets(model: nn.Module, spec=None, option: str = "lora_target_modules") -> Targets:
    """LoRA targets for ``spec``: None = :func:`default_lora_targets`, else as :func:`resolve_targets`."""
    if spec is None:
        return default_lora_targets(model)
    return resolve_targets(model, spec, option, "lora")


def _kv_geometry(model: nn.Module) -> tuple[int, int, int]:
    """``(layers, kv_heads, head_dim)`` read from the KV cache of a one-token forward: what the attention really
    stores (multi-query Falcon: 1 head; GQA: the KV heads; Gemma: its head_dim)."""
    base = arch.unwrap(model)
    mt = arch.model_type(model)
    dev = next(base.parameters()).device
    try:
        with torch.no_grad():
            one = torch.zeros((1, 1), dtype=torch.long, device=dev)
            out = base(input_ids=one, attention_mask=torch.ones_like(one), use_cache=True)
        cache = out.past_key_values
        keys = [lay.keys for lay in cache.layers] if hasattr(cache, "layers") else [kv[0] for kv in cache]
    except Exception as e:  # noqa: BLE001 - any failure means PEFT's prefix cannot be built for this model
        raise ActlabError(
            f"prefix tuning cannot run on {mt}: its forward gives no usable KV cache "
            f"({type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''})"
        ) from None
    shapes = {tuple(k.shape[1:2]) + tuple(k.shape[3:]) for k in keys if k is not None and k.dim() == 4}
    if len(keys) != arch.num_layers(model) or len(shapes) != 1:
        raise ActlabError(
            f"prefix tuning cannot run on {mt}: its layers cache keys of different shapes "
            f"({sorted(shapes)}), which PEFT's one-size prefix cannot serve"
        )
    ((kv, hd),) = shapes
    return len(keys), int(kv), int(hd)


def peft_config(
    family: str,
    model: nn.Module,
    *,
    modules="qko",
    r: int = 8,
    alpha: int = 8,
    dropout: float = 0.0,
    num_virtual_tokens: int = 20,
):
    """The PEFT config of ``family`` for ``model`` (targets resolved in and sizes read from the model)."""
    from peft import IA3Config, LoraConfig, PrefixTuningConfig, PromptTuningConfig, TaskType

    if family == "lora":
        t = resolve_targets(model, modules, "--lora_type", "lora")
        kw = {"target_parameters": t.parameters} if t.parameters else {}
        return LoraConfig(
            task_type=TaskType.CAUSAL_LM,
            r=r,
            lora_alpha=alpha,
            lora_dropout=dropout,
            target_modules=t.modules or None,
            bias="none",
            fan_in_fan_out=conv1d_targets(model, t.modules),
            **kw,
        )
    if family == "ia3":
        t = resolve_targets(model, modules, "--ia3_type", "ia3")
        return IA3Config(
            task_type=TaskType.CAUSAL_LM,
            target_modules=t.modules,
            feedforward_modules=t.modules,
            fan_in_fan_out=conv1d_targets(model, t.modules),
        )
    if num_virtual_tokens <= 0 and family in ("prompt", "prefix"):
        raise ActlabError(f"--num_virtual_tokens must be a positive integer, got {num_virtual_tokens}")
    if family == "prompt":
        d = arch.embed_size(model)
        _dry_run(model, "prompt tuning", inputs_embeds=torch.zeros((1, num_virtual_tokens + 2, d)))
        return PromptTuningConfig(
            task_type=TaskType.CAUSAL_LM,
            num_virtual_tokens=num_virtual_tokens,
            prompt_tuning_init="RANDOM",
            token_dim=d,
            num_layers=arch.num_layers(model),
        )
    if family == "prefix":
        n_layers, kv, hd = _kv_geometry(model)
        _dry_run(model, "prefix tuning", prefix=(n_layers, kv, num_virtual_tokens, hd))
        return PrefixTuningConfig(
            task_type=TaskType.CAUSAL_LM,
            num_virtual_tokens=num_virtual_tokens,
            num_layers=n_layers,
            num_attention_heads=kv,
            token_dim=kv * hd,
        )
    raise unknown_choice("adapter family", family, FAMILIES)


def _dry_run(
    model: nn.Module,
    family: str,
    inputs_embeds: torch.Tensor | None = None,
    prefix: tuple[int, int, int, int] | None = None,
) -> None:
    """Run the base model the way PEFT will (virtual-token embeddings, or a prefix KV cache) on zeros, before any
    adapter or target is built: an architecture that cannot take it is one line (architecture + reason)."""
    base = arch.unwrap(model)
    p = next(base.parameters())
    try:
        with torch.no_grad():
            if inputs_embeds is not None:
                x = inputs_embeds.to(p.device, p.dtype)
                base(inputs_embeds=x, attention_mask=torch.ones(x.shape[:2], dtype=torch.long, device=p.device))
            else:
                from transformers import DynamicCache

                n_layers, kv, nv, hd = prefix
                cache = DynamicCache(config=base.config)
                for i in range(n_layers):
                    z = torch.zeros((1, kv, nv, hd), device=p.device, dtype=p.dtype)
                    cache.update(z, z.clone(), i)
                base(
                    input_ids=torch.zeros((1, 2), dtype=torch.long, device=p.device),
                    past_key_values=cache,
                    attention_mask=torch.ones((1, nv + 2), dtype=torch.long, device=p.device),
                )
    except Exception as e:  # noqa: BLE001 - the reason goes into the one-line error
        msg = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
        raise ActlabError(
            f"{family} cannot run on {arch.model_type(model)}: PEFT's virtual tokens do not fit this "
            f"architecture ({type(e).__name__}: {msg})"
        ) from None


def conv1d_targets(model: nn.Module, names: list[str]) -> bool:
    """Whether the targets are HF ``Conv1D`` (GPT-2: weights stored transposed; PEFT needs ``fan_in_fan_out``)."""
    base = arch.unwrap(model)
    return any(
        type(m).__name__ == "Conv1D" and any(n == x or n.endswith("." + x) for x in names)
        for n, m in base.named_modules()
    )


def adapted_modules(model: nn.Module) -> list[str]:
    """What an attached adapter wraps: layer-relative paths with the layer index as ``*``
    (``model.layers.*.self_attn.qkv_proj``), MoE expert weights included; prompt/prefix tuning: ``[]``."""
    base = arch.unwrap(model)
    out = set()
    for name, mod in base.named_modules():
        if hasattr(mod, "base_layer") and (hasattr(mod, "lora_A") or hasattr(mod, "ia3_l")):
            pname = getattr(mod, "parameter_name", None)
            name = re.sub(r"(\.base_layer)+", "", name)
            out.add(re.sub(r"\.\d+\.", ".*.", name) + (f".{pname}" if pname else ""))
    return sorted(out)


def _quiet_peft():
    """PEFT 0.21 calls a transformers API deprecated in 5.x (``is_gradient_checkpointing``): hide that warning."""
    import warnings

    ctx = warnings.catch_warnings()
    ctx.__enter__()
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
    return ctx


def attach(model: nn.Module, config, seed: int | None = None) -> nn.Module:
    """Wrap ``model`` with a fresh trainable adapter (base weights frozen).

    ``seed``: draw the adapter's random init from this seed, leaving the global RNG as it was (torch does not seed
    its global RNG to a fixed value across processes, so an unseeded init differs from run to run).
    """
    from peft import get_peft_model

    ctx = _quiet_peft()
    try:
        if seed is None:
            pm = get_peft_model(model, config)
        else:
            with torch.random.fork_rng(devices=list(range(torch.cuda.device_count()))):
                torch.manual_seed(seed)
                pm = get_peft_model(model, config)
    finally:
        ctx.__exit__(None, None, None)
    if getattr(config, "is_prompt_learning", False):
        _check_runs(pm, config)
    return pm


def _check_runs(pm: nn.Module, config) -> None:
    """One tiny forward of a prompt-learning model, so an architecture PEFT cannot serve fails before any step
    with one line (architecture + reason) instead of a traceback mid-training."""
    family = {"PROMPT_TUNING": "prompt tuning", "PREFIX_TUNING": "prefix tuning"}.get(
        getattr(config.peft_type, "value", str(config.peft_type)), str(config.peft_type)
    )
    dev = next(pm.parameters()).device
    was = pm.training
    pm.eval()
    try:
        with torch.no_grad():
            pm(
                input_ids=torch.zeros((1, 2), dtype=torch.long, device=dev),
                attention_mask=torch.ones((1, 2), dtype=torch.long, device=dev),
            )
    except Exception as e:  # noqa: BLE001 - the reason goes into the one-line error
        msg = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
        raise ActlabError(
            f"{family} cannot run on {arch.model_type(pm)}: PEFT's virtual tokens do not fit this "
            f"architecture ({type(e).__name__}: {msg})"
        ) from None
    finally:
        pm.train(was)


def load_adapter(model: nn.Module, path, trainable: bool = False) -> nn.Module:
    """Wrap ``model`` with the adapter saved in ``path`` (``save_pretrained`` layout, safetensors)."""
    from peft import PeftConfig, PeftModel, set_peft_model_state_dict
    from safetensors.torch import load_file

    if not trainable:
        ctx = _quiet_peft()
        try:
            return PeftModel.from_pretrained(model, str(path), is_trainable=False)
        finally:
            ctx.__exit__(None, None, None)
    # PEFT refuses is_trainable=True for prompt learning; a fresh adapter + the saved weights works for every family
    cfg = PeftConfig.from_pretrained(str(path))
    cfg.inference_mode = False
    pm = attach(model, cfg)
    dev = next(model.parameters()).device
    state = {k: v.to(dev) for k, v in load_file(str(Path(path) / "adapter_model.safetensors")).items()}
    set_peft_model_state_dict(pm, state)
    got = adapter_state(pm)
    bad = [k for k, v in state.items() if k not in got or not torch.equal(got[k], v)]
    if bad:
        raise ActlabError(f"adapter {path} does not fit the model ({bad[0]} was not loaded)")
    return pm


def adapter_state(model: nn.Module) -> dict:
    """The adapter's parameters (PEFT's state dict: only what ``save_pretrained`` writes), detached copies."""
    from peft import get_peft_model_state_dict

    return {k: v.detach().clone() for k, v in get_peft_model_state_dict(model).items()}


def load_adapter_state(model: nn.Module, state: dict) -> None:
    from peft import set_peft_model_state_dict

    set_peft_model_state_dict(model, state)
