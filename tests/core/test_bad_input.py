"""Bad input, verb by verb: exit code 2, one line on stderr that names the bad value, no traceback, nothing written.

Most cases run the CLI in-process (``actlab.cli.main.main``); a few go through a subprocess. Every case fails
before a model is loaded, so the table runs in seconds.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from actlab.cli.main import main

#: a valid-looking command line per verb (each case adds what makes it bad); {fx} = the fixtures directory
BASE = {
    "zoo build": ["zoo", "build", "tiny"],
    "zoo list": ["zoo", "list"],
    "data list": ["data", "list"],
    "data prepare": ["data", "prepare", "--dataset", "syn_sst2"],
    "data make-train": ["data", "make-train", "--datasets", "syn_sst2"],
    "ia2 train": ["ia2", "train", "--training_method", "act", "--output_dir", "out"],
    "ia2 sweep": ["ia2", "sweep", "--training_methods", "act", "--output_dir", "out"],
    "ia2 evaluate": ["ia2", "evaluate", "--outputs_dir", "out"],
    "ia2 plot": ["ia2", "plot", "--trained_dataset", "syn_sst2", "--outputs_dir", "out", "--plots_dir", "plots"],
    "ia2 plot-all": ["ia2", "plot-all", "--outputs_dir", "out", "--plots_dir", "plots"],
    "ia2 analyze activation-similarity": ["ia2", "analyze", "activation-similarity", "--outputs_dir", "out"],
    "ia2 analyze subspace-overlap": ["ia2", "analyze", "subspace-overlap", "--outputs_dir", "out"],
    "ia2 demo": ["ia2", "demo", "--work_dir", "w"],
    "iav cache": ["iav", "cache", "--cache_file", "c.safetensors"],
    "iav train": ["iav", "train", "--output_dir", "run"],
    "iav launch": ["iav", "launch", "--output_dir", "run"],
    "iav generate": ["iav", "generate", "--heads", "{fx}/heads", "--prompt", "hi"],
    "iav evaluate": ["iav", "evaluate", "--heads", "{fx}/heads", "--output_dir", "ev"],
    "iav demo": ["iav", "demo", "--output_dir", "d"],
    "xmodel extract": ["xmodel", "extract", "--model_a", "tiny", "--model_b", "tiny-b", "--out", "p"],
    "xmodel align": ["xmodel", "align", "--pairs", "{fx}/pairs", "--layer_a", "0", "--layer_b", "0", "--out", "m"],
    "xmodel communicate": ["xmodel", "communicate", "--model_a", "tiny", "--model_b", "tiny-b", "--out", "c"],
    "xmodel run-all": ["xmodel", "run-all", "--out", "r"],
    "xmodel demo": ["xmodel", "demo", "--out", "d"],
    "icae prepare-pretrain": ["icae", "prepare-pretrain", "--output_dir", "run"],
    "icae pretrain": ["icae", "pretrain", "--output_dir", "run"],
    "icae finetune": ["icae", "finetune", "--output_dir", "run"],
    "icae infer": ["icae", "infer", "--output_dir", "run"],
    "icae demo": ["icae", "demo", "--output_dir", "run"],
    "demo": ["demo", "--work_dir", "w"],
}

# -- the same categories for every verb -------------------------------------------------------------------------
GENERIC = [("unknown flag", ["--bogus_flag", "1"], ["--bogus_flag"])]
CONFIG_FILE = [
    ("config missing", ["--config_path", "{fx}/missing.yaml"], ["missing.yaml", "not found"]),
    ("config not UTF-8", ["--config_path", "{fx}/latin1.yaml"], ["latin1.yaml", "not UTF-8", "0xe9"]),
    ("config unknown key", ["--config_path", "{fx}/unknown_key.yaml"], ["unknown key 'bogus_key'", "valid keys"]),
    ("config not a mapping", ["--config_path", "{fx}/list.yaml"], ["list.yaml", "expected a mapping", "list"]),
    ("config is a directory", ["--config_path", "{fx}/a_dir"], ["a_dir", "is a directory"]),
    ("config bad YAML", ["--config_path", "{fx}/broken.yaml"], ["broken.yaml", "not valid YAML", "line"]),
    ("config bad JSON", ["--config_path", "{fx}/broken.json"], ["broken.json", "not valid JSON", "line 1"]),
]

# -- verb-specific cases: (verb, extra args, needles) ----------------------------------------------------------
SPECIFIC = [
    # zoo
    ("zoo build", ["--seed", "-1"], ["--seed", "-1"]),
    ("zoo build", ["--seed", "abc"], ["--seed", "'abc'"]),
    ("zoo build", ["--force", "maybe"], ["unrecognized arguments: maybe"]),
    ("zoo build", ["--config_path", "{fx}/seed_str.yaml"], ["seed", "'seven'"]),
    ("zoo list", ["extra"], ["extra"]),
    # data
    ("data list", ["--data_dir", "{fx}/a_file"], ["--data_dir", "a_file", "is a file"]),
    ("data prepare", ["--dataset", "sst3"], ["'sst3'", "did you mean 'sst2'", "valid:"]),
    ("data prepare", ["--num_train_samples", "-1"], ["--num_train_samples", "-1"]),
    ("data prepare", ["--num_val_samples", "abc"], ["--num_val_samples", "'abc'"]),
    ("data prepare", ["--label_template", "weird"], ["'weird'", "normal", "remap"]),
    ("data prepare", ["--dataset", "gsm8k", "--label_template", "remap"], ["gsm8k", "not supported"]),
    ("data prepare", ["--data_dir", "{fx}/a_file"], ["--data_dir", "a_file", "is a file"]),
    ("data prepare", ["--data_dir", "{fx}/a_file/sub"], ["--data_dir", "a_file", "is a file"]),
    ("data make-train", ["--datasets", "sst3"], ["'sst3'", "did you mean"]),
    ("data make-train", ["--num_runs", "0"], ["--num_runs", "0"]),
    ("data make-train", ["--num_train_examples", "0", "4"], ["--num_train_examples", "0"]),
    ("data make-train", ["--max_icl_demos", "-1"], ["--max_icl_demos", "-1"]),
    ("data make-train", ["--datasets", "agnews", "--data_dir", "d"], ["agnews", "actlab data prepare"]),
    ("data make-train", ["--data_dir", "{fx}/a_file"], ["--data_dir", "a_file"]),
    ("data make-train", ["--data_dir", "{fx}/data_latin1"], ["main.json", "not UTF-8"]),
    ("data make-train", ["--data_dir", "{fx}/data_schema"], ["main.json", "expected a JSON object", "list"]),
    ("data make-train", ["--data_dir", "{fx}/data_trunc"], ["main.json", "not valid JSON", "truncated"]),
    # ia2 train
    ("ia2 train", ["--training_method", "actt"], ["'actt'", "did you mean 'act'"]),
    ("ia2 train", ["--training_method", "tok"], ["--training_method tok", "--label_type"]),
    ("ia2 train", ["--training_method", "act", "--continue_training", "a2t"], ["--continue_training a2t", "act"]),
    ("ia2 train", ["--training_method", "tna", "--ce_loss_weight", "2"], ["--ce_loss_weight", "2"]),
    ("ia2 train", ["--lr", "0"], ["--lr", "0"]),
    ("ia2 train", ["--lr", "-1e-3"], ["--lr", "-0.001"]),
    ("ia2 train", ["--lr", "nan"], ["--lr", "nan"]),
    ("ia2 train", ["--lr", "inf"], ["--lr", "inf"]),
    ("ia2 train", ["--lr", "fast"], ["--lr", "'fast'"]),
    ("ia2 train", ["--lora_r", "abc"], ["--lora_r", "'abc'"]),
    ("ia2 train", ["--lora_r", "0"], ["--lora_r", "0"]),
    ("ia2 train", ["--lora_dropout", "1.5"], ["--lora_dropout", "1.5", "[0, 1)"]),
    ("ia2 train", ["--lora_dropout", "-0.1"], ["--lora_dropout", "-0.1"]),
    ("ia2 train", ["--lora_type", "q-k"], ["'q-k'", "letters"]),
    ("ia2 train", ["--lora_type", "qq"], ["'qq'", "repeated"]),
    ("ia2 train", ["--label_type", "gold"], ["'gold'", "ground_truth"]),
    ("ia2 train", ["--max_steps", "0"], ["--max_steps", "0"]),
    ("ia2 train", ["--batch_size", "0"], ["--batch_size", "0"]),
    ("ia2 train", ["--num_generated_tokens", "-2"], ["--num_generated_tokens", "-2"]),
    ("ia2 train", ["--act_site", "nowhere"], ["'nowhere'", "attn_output"]),
    ("ia2 train", ["--device", "bogus"], ["--device", "'bogus'", "cpu"]),
    ("ia2 train", ["--device", "cuda:7"], ["--device", "cuda:7"]),
    ("ia2 train", ["--dtype", "fp8"], ["--dtype", "'fp8'", "bfloat16"]),
    ("ia2 train", ["--training_method", "prompt-act", "--lora_r", "4"], ["--lora_r 4", "prompt-act", "lora"]),
    ("ia2 train", ["--training_method", "prefix-act", "--lora_type", "qkv"], ["--lora_type 'qkv'", "prefix-act"]),
    ("ia2 train", ["--training_method", "act", "--ia3_type", "qkv"], ["--ia3_type 'qkv'", "ia3"]),
    ("ia2 train", ["--training_method", "ia3-act", "--num_virtual_tokens", "5"], ["--num_virtual_tokens 5"]),
    ("ia2 train", ["--training_method", "act", "--ce_loss_weight", "0.5"], ["--ce_loss_weight", "tna"]),
    ("ia2 train", ["--output_dir", "{fx}/a_file"], ["--output_dir", "a_file", "is a file"]),
    ("ia2 train", ["--dataset", "syn_sst2", "--data_dir", "{fx}/data_latin1"], ["main.json", "not UTF-8"]),
    ("ia2 train", ["--dataset", "syn_sst2", "--data_dir", "{fx}/data_keys"], ["main.json", "lacks val_examples"]),
    (
        "ia2 train",
        ["--dataset", "syn_sst2", "--data_dir", "{fx}/data_run", "--num_train_examples", "4"],
        ["4_0.json", "not valid JSON"],
    ),
    ("ia2 train", ["--model_id", "{fx}/corrupt_model"], ["corrupt_model", "model.safetensors", "not a readable"]),
    ("ia2 train", ["--model_id", "{fx}/a_dir"], ["--model_id", "a_dir", "config.json"]),
    ("ia2 train", ["--model_id", "{fx}/a_file"], ["--model_id", "a_file", "is a file"]),
    ("ia2 train", ["--model_id", "./no_such_model"], ["no_such_model", "no such directory"]),
    ("ia2 train", ["--data_dir", "{fx}/a_file"], ["--data_dir", "a_file", "is a file"]),
    ("ia2 train", ["--config_path", "{fx}/lora_r_abc.yaml"], ["lora_r", "'abc'"]),
    ("ia2 train", ["--config_path", "{fx}/lr_negative.yaml"], ["--lr", "-0.001"]),
    ("ia2 train", ["--config_path", "{fx}/lr_null.yaml"], ["lr", "null"]),
    ("ia2 train", ["--config_path", "{fx}/act_layers_str.yaml"], ["act_layers", "'x'"]),
    ("ia2 train", ["--config_path", "{fx}/bool_str.yaml"], ["force", "'yes please'"]),
    # ia2 sweep
    ("ia2 sweep", ["--training_methods", "act", "bogus"], ["'bogus'", "training method"]),
    ("ia2 sweep", ["--max_parallel", "0"], ["--max_parallel", "0"]),
    ("ia2 sweep", ["--lrs", "1e-3", "abc"], ["--lrs", "'abc'"]),
    ("ia2 sweep", ["--lrs", "0"], ["--lr", "0"]),
    ("ia2 sweep", ["--training_methods", "tna", "--ce_loss_weights", "2"], ["--ce_loss_weight", "2"]),
    ("ia2 sweep", ["--lora_rs", "0"], ["--lora_r", "0"]),
    ("ia2 sweep", ["--dry_run", "maybe"], ["--dry_run", "maybe"]),
    ("ia2 sweep", ["--device", "bogus"], ["'bogus'"]),
    # ia2 evaluate / plot / analyze / demo
    ("ia2 evaluate", ["--model_types", "sft"], ["'sft'", "base"]),
    ("ia2 evaluate", ["--icl_max_demos", "-1"], ["icl_max_demos", "-1"]),
    ("ia2 evaluate", ["--num_eval_examples", "0"], ["num_eval_examples", "0"]),
    ("ia2 evaluate", ["--batch_size", "0"], ["batch_size", "0"]),
    ("ia2 evaluate", ["--lrs", "abc"], ["--lrs", "'abc'"]),
    ("ia2 evaluate", ["--lrs", "-1"], ["--lrs", "-1"]),
    ("ia2 evaluate", ["--outputs_dir", "{fx}/a_file"], ["--outputs_dir", "a_file", "is a file"]),
    ("ia2 evaluate", ["--device", "bogus"], ["'bogus'"]),
    ("ia2 plot", ["--plot_types", "pie"], ["'pie'", "accuracy"]),
    ("ia2 plot", ["--icl_max_demos", "-1"], ["--icl_max_demos", "-1"]),
    ("ia2 plot", ["--uncertainty_mode", "sometimes"], ["--uncertainty_mode", "sometimes"]),
    ("ia2 plot", [], ["no evaluation results"]),
    ("ia2 plot", ["--plots_dir", "{fx}/a_file"], ["--plots_dir", "a_file"]),
    ("ia2 plot-all", ["--icl_max_demos", "abc"], ["--icl_max_demos", "'abc'"]),
    ("ia2 plot-all", ["--icl_max_demos", "-3"], ["--icl_max_demos", "-3"]),
    ("ia2 plot-all", [], ["no evaluation results"]),
    ("ia2 plot-all", ["--outputs_dir", "{fx}/a_file"], ["--outputs_dir", "a_file"]),
    ("ia2 analyze activation-similarity", ["--num_samples", "0"], ["--num_samples", "0"]),
    ("ia2 analyze activation-similarity", ["--model_types", "sft"], ["'sft'"]),
    ("ia2 analyze activation-similarity", [], ["no trained model", "out"]),
    ("ia2 analyze activation-similarity", ["--plots_dir", "{fx}/a_file"], ["--plots_dir", "a_file"]),
    ("ia2 analyze subspace-overlap", ["--lrs", "abc"], ["--lrs", "'abc'"]),
    ("ia2 analyze subspace-overlap", ["--model_types", "sft"], ["'sft'"]),
    ("ia2 analyze subspace-overlap", [], ["no trained model"]),
    ("ia2 demo", ["--num_runs", "0"], ["--num_runs", "0"]),
    ("ia2 demo", ["--N", "-4"], ["N", "-4"]),
    ("ia2 demo", ["--lr", "0"], ["--lr", "0"]),
    ("ia2 demo", ["--dataset", "syn_sst3"], ["'syn_sst3'"]),
    ("ia2 demo", ["--work_dir", "{fx}/a_file"], ["--work_dir", "a_file"]),
    ("ia2 demo", ["--quick", "perhaps"], ["--quick", "perhaps"]),
    # iav
    ("iav cache", ["--loss", "dpo"], ["'dpo'", "corrected"]),
    ("iav cache", ["--num_samples", "0"], ["num_samples", "0"]),
    ("iav cache", ["--max_prompt_length", "200"], ["max_prompt_length (200)", "seq_length (128)"]),
    ("iav cache", ["--topk", "-1"], ["topk", "-1"]),
    ("iav cache", ["--device", "bogus"], ["'bogus'"]),
    ("iav cache", ["--dataset", "{fx}/truncated.jsonl"], ["truncated.jsonl", "line 3", "truncated"]),
    ("iav cache", ["--cache_file", "{fx}/a_dir"], ["--cache_file", "a_dir", "directory"]),
    ("iav train", ["--learning_rate", "0"], ["--learning_rate", "0"]),
    ("iav train", ["--learning_rate", "-1"], ["--learning_rate", "-1"]),
    ("iav launch", ["--num_processes", "0"], ["--num_processes", "0"]),
    ("iav launch", ["--learning_rate", "0"], ["--learning_rate", "0"]),
    ("iav train", ["--beta", "0"], ["beta", "0"]),
    ("iav train", ["--lambda_kl", "-1"], ["lambda_kl", "-1"]),
    ("iav train", ["--lambda_l2", "nan"], ["lambda_l2", "nan"]),
    ("iav train", ["--warmup_ratio", "1"], ["warmup_ratio", "1"]),
    ("iav train", ["--loss", "dpo"], ["'dpo'"]),
    ("iav train", ["--train_alpha", "nan"], ["train_alpha", "nan"]),
    ("iav train", ["--max_prompt_length", "200"], ["max_prompt_length (200)"]),
    ("iav train", ["--save_steps", "0"], ["save_steps", "0"]),
    ("iav train", ["--device", "bogus"], ["'bogus'"]),
    ("iav train", ["--config_path", "{fx}/loss_config_5.yaml"], ["loss_config", "5", "beta"]),
    ("iav train", ["--config_path", "{fx}/lr_str.yaml"], ["learning_rate", "'fast'"]),
    ("iav train", ["--dataset", "{fx}/missing.jsonl"], ["missing.jsonl", "does not exist"]),
    ("iav train", ["--dataset", "{fx}/truncated.jsonl"], ["truncated.jsonl", "line 3", "truncated"]),
    ("iav train", ["--dataset", "{fx}/wrong_schema.json"], ["wrong_schema.json", "chosen", "rejected"]),
    ("iav train", ["--dataset", "{fx}/not_records.json"], ["not_records.json", "expected a list"]),
    ("iav train", ["--dataset", "{fx}/latin1.jsonl"], ["latin1.jsonl", "not UTF-8"]),
    ("iav train", ["--cache_file", "{fx}/corrupt.safetensors"], ["corrupt.safetensors", "not a readable"]),
    ("iav train", ["--cache_file", "{fx}/truncated.safetensors"], ["truncated.safetensors", "truncated"]),
    ("iav train", ["--output_dir", "{fx}/a_file"], ["--output_dir", "a_file", "is a file"]),
    ("iav train", ["--model_name_or_path", "{fx}/corrupt_model"], ["corrupt_model", "not a readable"]),
    ("iav cache", ["--ref_model", "{fx}/truncated_model"], ["truncated_model", "truncated"]),
    ("iav generate", ["--alpha", "-1"], ["alpha", "-1"]),
    ("iav generate", ["--alpha", "nan"], ["alpha", "nan"]),
    ("iav generate", ["--temperature", "0"], ["temperature", "0"]),
    ("iav generate", ["--top_p", "0"], ["top_p", "0"]),
    ("iav generate", ["--max_new_tokens", "0"], ["max_new_tokens", "0"]),
    ("iav generate", ["--heads", "{fx}/no_heads"], ["--heads", "no_heads", "does not exist"]),
    ("iav generate", ["--prompts_file", "{fx}/truncated.jsonl"], ["truncated.jsonl", "line 3"]),
    ("iav generate", ["--output_file", "{fx}/a_dir"], ["--output_file", "a_dir", "directory"]),
    ("iav evaluate", ["--alphas", "0", "-2"], ["alpha", "-2"]),
    ("iav evaluate", ["--temperature", "0"], ["temperature", "0"]),
    ("iav evaluate", ["--num_prompts", "0"], ["num_prompts", "0"]),
    ("iav evaluate", ["--prompt_set", "bogus"], ["'bogus'", "syn_hh"]),
    ("iav evaluate", ["--heads", "{fx}/no_heads"], ["--heads", "no_heads"]),
    ("iav evaluate", ["--dpo_model", "{fx}/no_dpo"], ["--dpo_model", "no_dpo", "--train_baselines"]),
    ("iav evaluate", ["--baseline_steps", "0"], ["--baseline_steps", "0"]),
    ("iav demo", ["--num_prompts", "0"], ["--num_prompts", "0"]),
    ("iav demo", ["--max_new_tokens", "-1"], ["--max_new_tokens", "-1"]),
    ("iav demo", ["--quick", "nope"], ["--quick", "nope"]),
    # xmodel
    ("xmodel extract", ["--model_b", "tiny"], ["same", "'tiny'"]),
    ("xmodel extract", ["--heldout", "1.5"], ["--heldout", "1.5"]),
    ("xmodel extract", ["--pooling", "max"], ["'max'", "last"]),
    ("xmodel extract", ["--texts", "{fx}/latin1.txt"], ["latin1.txt", "not UTF-8"]),
    ("xmodel extract", ["--texts", "{fx}/missing.txt"], ["missing.txt", "syn_passages"]),
    ("xmodel extract", ["--texts", "{fx}/a_dir"], ["a_dir", "is a directory"]),
    ("xmodel extract", ["--out", "{fx}/a_file"], ["--out", "a_file", "is a file"]),
    ("xmodel extract", ["--n_texts", "0"], ["--n_texts", "0"]),
    ("xmodel extract", ["--model_a", "{fx}/truncated_model"], ["--model_a", "truncated_model", "truncated"]),
    ("xmodel communicate", ["--model_b", "{fx}/a_dir"], ["--model_b", "a_dir", "config.json"]),
    ("xmodel run-all", ["--model_a", "{fx}/corrupt_model"], ["--model_a", "corrupt_model"]),
    ("xmodel extract", ["--layers_a", "0,x"], ["--layers_a", "0,x"]),
    ("xmodel align", ["--pairs", "{fx}/no_pairs"], ["--pairs", "no_pairs", "does not exist"]),
    ("xmodel align", ["--pairs", "{fx}/a_file"], ["--pairs", "a_file", "is a file"]),
    ("xmodel align", ["--pairs", "{fx}/a_dir"], ["--pairs", "a_dir", "pairs.json"]),
    ("xmodel align", ["--lr", "-1"], ["--lr", "-1"]),
    ("xmodel align", ["--ridge_lambda", "-1"], ["--ridge_lambda", "-1"]),
    ("xmodel align", ["--temperature", "0"], ["--temperature", "0"]),
    ("xmodel align", ["--method", "cca"], ["'cca'", "procrustes"]),
    ("xmodel align", ["--layer_a", "abc"], ["--layer_a", "'abc'"]),
    ("xmodel align", ["--out", "{fx}/a_file"], ["--out", "a_file"]),
    ("xmodel communicate", ["--f", "avg"], ["'avg'", "replace"]),
    ("xmodel communicate", ["--task", "trivia"], ["'trivia'", "syn_countries"]),
    ("xmodel communicate", ["--methods", "b_alone,bogus"], ["'bogus'", "skyline"]),
    ("xmodel communicate", ["--n", "0"], ["--n", "0"]),
    ("xmodel communicate", ["--map", "{fx}/a_dir"], ["--map", "a_dir", "map.json"]),
    ("xmodel communicate", ["--out", "{fx}/a_file"], ["--out", "a_file"]),
    ("xmodel run-all", ["--f", "avg"], ["unknown f 'avg'"]),
    ("xmodel run-all", ["--n_texts", "12"], ["at least 4"]),
    ("xmodel run-all", ["--lr", "-1"], ["--lr", "-1"]),
    ("xmodel run-all", ["--temperature", "0"], ["--temperature", "0"]),
    ("xmodel run-all", ["--ridge_lambda", "-0.5"], ["--ridge_lambda", "-0.5"]),
    ("xmodel run-all", ["--methods", "procrustes,cca"], ["'cca'"]),
    ("xmodel run-all", ["--model_b", "tiny"], ["same"]),
    ("xmodel run-all", ["--device", "bogus"], ["'bogus'"]),
    ("xmodel run-all", ["--out", "{fx}/a_file"], ["--out", "a_file"]),
    ("xmodel run-all", ["--texts", "{fx}/latin1.txt"], ["latin1.txt", "not UTF-8"]),
    ("xmodel demo", ["--lr", "0"], ["--lr", "0"]),
    ("xmodel demo", ["--heldout", "0"], ["heldout", "0"]),
    ("xmodel demo", ["--epochs", "0"], ["epochs", "0"]),
    # icae
    ("icae pretrain", ["--fixed_mem_size", "24"], ["power of 2", "24"]),
    ("icae pretrain", ["--config_path", "{fx}/icae_mem24.yaml"], ["power of 2", "24"]),
    ("icae pretrain", ["--logging_steps", "0"], ["--logging_steps", "0"]),
    ("icae pretrain", ["--config_path", "{fx}/icae_logging0.yaml"], ["logging_steps", "0"]),
    ("icae pretrain", ["--lora_dropout", "1.5"], ["--lora_dropout", "1.5"]),
    ("icae pretrain", ["--fixed_mem_size", "64", "--max_seq_len", "32"], ["fixed_mem_size 64", "max_seq_len 32"]),
    ("icae pretrain", ["--learning_rate", "0"], ["--learning_rate", "0"]),
    ("icae pretrain", ["--device", "bogus"], ["'bogus'"]),
    ("icae pretrain", ["--model_name", "{fx}/corrupt_model"], ["--model_name", "corrupt_model"]),
    ("ia2 evaluate", ["--model_id", "{fx}/truncated_model"], ["--model_id", "truncated_model"]),
    ("icae pretrain", ["--dtype", "float16"], ["float16"]),
    ("icae pretrain", ["--output_dir", "{fx}/a_file"], ["output_dir", "a_file", "is a file"]),
    ("icae pretrain", ["--config_path", "{fx}/icae_str_int.yaml"], ["fixed_mem_size", "'32'"]),
    ("icae finetune", ["--checkpoint_path", "{fx}/ia2_adapter"], ["ia2_adapter", "not an ICAE checkpoint"]),
    (
        "icae finetune",
        ["--checkpoint_path", "{fx}/ia2_adapter/adapter_model.safetensors"],
        ["adapter_model.safetensors", "not an ICAE checkpoint"],
    ),
    ("icae finetune", ["--checkpoint_path", "{fx}/corrupt.safetensors"], ["corrupt.safetensors", "not a readable"]),
    ("icae finetune", ["--checkpoint_path", "{fx}/truncated.safetensors"], ["truncated.safetensors", "truncated"]),
    ("icae finetune", ["--checkpoint_path", "{fx}/missing.safetensors"], ["missing.safetensors", "does not exist"]),
    ("icae finetune", ["--task", "summarise"], ["'summarise'", "qa"]),
    ("icae infer", ["--task", "summarise"], ["unknown task 'summarise'"]),
    ("icae infer", ["--model_type", "gpt"], ["'gpt'", "icae"]),
    ("icae infer", ["--batch_size", "0"], ["batch_size", "0"]),
    ("icae infer", ["--max_new_tokens", "-5"], ["max_new_tokens", "-5"]),
    ("icae infer", ["--predictions_dir", "{fx}/a_file"], ["predictions_dir", "a_file"]),
    ("icae prepare-pretrain", ["--num_train_samples", "0"], ["num_train_samples", "0"]),
    ("icae prepare-pretrain", ["--data_dir", "{fx}/a_file"], ["data_dir", "a_file"]),
    ("icae prepare-pretrain", ["--lm_ratio", "2"], ["lm_ratio", "2"]),
    ("icae demo", ["--save_steps", "0"], ["--save_steps", "0"]),
    ("icae demo", ["--quick", "maybe"], ["--quick", "maybe"]),
    ("icae demo", ["--fixed_mem_size", "3"], ["power of 2", "3"]),
    # the main demo
    ("demo", ["--model", "nope"], ["'nope'", "tiny"]),
    ("demo", ["--n_tasks", "0"], ["--n_tasks", "0"]),
    ("demo", ["--work_dir", "{fx}/a_file"], ["--work_dir", "a_file"]),
]


def _cases():
    out = []
    for verb in BASE:
        for name, extra, needles in GENERIC + (CONFIG_FILE if verb != "zoo list" else []):
            out.append(pytest.param(verb, extra, needles, id=f"{verb}: {name}"))
    for i, (verb, extra, needles) in enumerate(SPECIFIC):
        out.append(pytest.param(verb, extra, needles, id=f"{verb}: {' '.join(extra) or 'no results'} [{i}]"))
    return out


CASES = _cases()


@pytest.fixture(scope="module")
def fx(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("fx")
    (d / "a_file").write_text("not a directory\n")
    (d / "a_dir").mkdir()
    (d / "heads").mkdir()
    (d / "pairs").mkdir()
    (d / "pairs" / "pairs.json").write_text("{}")
    (d / "latin1.yaml").write_bytes("lr: caf\xe9\n".encode("latin-1"))
    (d / "latin1.jsonl").write_bytes('{"prompt": "caf\xe9"}\n'.encode("latin-1"))
    (d / "latin1.txt").write_bytes("un caf\xe9\n".encode("latin-1"))
    (d / "unknown_key.yaml").write_text("bogus_key: 1\n")
    (d / "list.yaml").write_text("- a\n- b\n")
    (d / "broken.yaml").write_text("lr: [1, 2\n")
    (d / "broken.json").write_text('{"lr": 1e-3,')
    (d / "seed_str.yaml").write_text("seed: seven\n")
    (d / "lora_r_abc.yaml").write_text("training_method: act\nlora_r: abc\n")
    (d / "lr_negative.yaml").write_text("lr: -1e-3\n")
    (d / "lr_null.yaml").write_text("lr: null\n")
    (d / "act_layers_str.yaml").write_text("act_layers: [0, x]\n")
    (d / "bool_str.yaml").write_text("force: yes please\n")
    (d / "loss_config_5.yaml").write_text("loss_config: 5\n")
    (d / "lr_str.yaml").write_text("learning_rate: fast\n")
    (d / "icae_mem24.yaml").write_text("fixed_mem_size: 24\n")
    (d / "icae_logging0.yaml").write_text("logging_steps: 0\n")
    (d / "icae_str_int.yaml").write_text("fixed_mem_size: '32'\n")
    row = {"prompt": "Human: hi\n\nAssistant:", "chosen": " hello", "rejected": " go away"}
    lines = [json.dumps(row)] * 2 + [json.dumps(row)[:20]]  # 2 rows and a line cut by a kill
    (d / "truncated.jsonl").write_text("\n".join(lines))
    (d / "wrong_schema.json").write_text(json.dumps([{"prompt": "a", "response": "b"}]))
    (d / "not_records.json").write_text(json.dumps({"prompt": "a"}))
    (d / "corrupt.safetensors").write_bytes(b"garbage, not a safetensors file")
    import torch
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(64, 64)}, str(d / "full.safetensors"))
    raw = (d / "full.safetensors").read_bytes()
    (d / "truncated.safetensors").write_bytes(raw[: len(raw) // 2])
    for name, weights in (("corrupt_model", b"garbage"), ("truncated_model", raw[: len(raw) // 2])):
        (d / name).mkdir()
        (d / name / "config.json").write_text("{}")
        (d / name / "model.safetensors").write_bytes(weights)
    pools = {
        "data_latin1": "caf\xe9".encode("latin-1"),
        "data_schema": b"[1, 2]",
        "data_trunc": b'{"train_exa',
        "data_keys": b'{"train_examples": []}',
        "data_run": b'{"train_examples": [], "val_examples": []}',
    }
    for name, text in pools.items():
        (d / name / "syn_sst2").mkdir(parents=True)
        (d / name / "syn_sst2" / "main.json").write_bytes(text)
    (d / "data_run" / "syn_sst2" / "train").mkdir()
    (d / "data_run" / "syn_sst2" / "train" / "4_0.json").write_text('{"train": {"examples": [')
    (d / "ia2_adapter").mkdir()
    (d / "ia2_adapter" / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA"}))
    save_file(
        {"base_model.model.layers.0.q_proj.lora_A.weight": torch.zeros(2, 8)},
        str(d / "ia2_adapter" / "adapter_model.safetensors"),
    )
    assert struct.unpack("<Q", raw[:8])[0] > 0
    return d


def _tree(*roots: Path) -> set[str]:
    return {str(p) for r in roots for p in r.rglob("*")}


def _run(argv: list[str]) -> int:
    try:
        return int(main(argv))
    except SystemExit as e:  # argparse errors exit from inside the parser
        return int(e.code)


@pytest.mark.parametrize("verb,extra,needles", CASES)
def test_bad_input(verb, extra, needles, fx, tmp_path, monkeypatch, capsys):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    argv = [a.replace("{fx}", str(fx)) for a in BASE[verb] + extra]
    before = _tree(tmp_path, fx)
    rc = _run(argv)
    err = capsys.readouterr().err
    lines = [x for x in err.splitlines() if x.strip()]
    assert rc == 2, (rc, err)
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert "error:" in lines[0]
    for n in needles:
        assert n.replace("{fx}", str(fx)) in lines[0], (n, lines[0])
    assert _tree(tmp_path, fx) == before, "a bad input wrote files"


def test_the_table_is_big_and_covers_every_verb():
    from actlab.cli.common import all_verbs

    verbs = {name for name, _ in all_verbs()}
    assert verbs == set(BASE), verbs ^ set(BASE)
    assert len(CASES) >= 150
    specific = {v for v, _, _ in SPECIFIC}
    assert specific == set(BASE)  # each verb also has its own cases


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["ia2", "train", "--training_method", "act", "--config_path", "{fx}/lora_r_abc.yaml"], "'abc'"),
        (["xmodel", "align", "--pairs", "{fx}/a_file", "--layer_a", "0", "--layer_b", "0", "--out", "m"], "a_file"),
        (["icae", "finetune", "--checkpoint_path", "{fx}/ia2_adapter"], "not an ICAE checkpoint"),
    ],
)
def test_bad_input_in_a_subprocess(argv, needle, fx, tmp_path):
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            [str(Path(__file__).resolve().parents[2] / "src"), os.environ.get("PYTHONPATH", "")]
        ),
    }
    r = subprocess.run(
        [sys.executable, "-m", "actlab.cli.main", *[a.replace("{fx}", str(fx)) for a in argv]],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert r.returncode == 2 and len(lines) == 1 and needle in lines[0] and "Traceback" not in r.stderr, r.stderr
    assert not any(tmp_path.iterdir())
