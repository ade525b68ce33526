"""Parameter blocks shared by several registries (teacher kinds, the student).

:mod:`mtkd.params` assembles the whole ``params.yaml`` schema; the blocks here sit below
it so that a teacher kind can define its own params model (``HFKind.Params`` extends
:class:`TrainArgs`) without importing :mod:`mtkd.params`, which imports every kind.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Strict(BaseModel):
    """Unknown keys are errors (reported with the nearest valid name by :mod:`mtkd.params`)."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class RandomInit(Strict):
    """A randomly initialised transformer built from a config (tests and tiny profiles)."""

    model_type: Literal["bert", "distilbert", "roberta"] = "bert"
    num_hidden_layers: int = Field(1, ge=1)
    hidden_size: int = Field(32, ge=8)
    num_attention_heads: int = Field(2, ge=1)
    intermediate_size: int = Field(64, ge=8)


class TrainArgs(Strict):
    """The run_glue.py vocabulary for one fine-tuning run."""

    max_seq_length: int = Field(64, ge=8, le=4096)
    num_train_epochs: int = Field(2, ge=1)
    per_device_train_batch_size: int = Field(32, ge=1)
    per_device_eval_batch_size: int = Field(128, ge=1)
    learning_rate: float = Field(5e-5, gt=0, lt=1)
    weight_decay: float = Field(0.01, ge=0, lt=1)
    warmup_ratio: float = Field(0.1, ge=0, le=1)
    max_train_samples: int | None = Field(None, ge=1)
    evaluations_per_epoch: int = Field(1, ge=1, le=100)
    # HF's EarlyStoppingCallback: stop after this many evaluations in a row that do not beat the
    # best validation score by more than the threshold (num_train_epochs is then the most, and
    # the learning-rate schedule still spans it); null: train every epoch.
    early_stopping_patience: int | None = Field(None, ge=1)
    early_stopping_threshold: float = Field(0.0, ge=0, lt=1)
