"""``params.yaml``: typed, range-checked and cross-checked before any compute.

Each stage calls :func:`load_params` first; any problem becomes one
:class:`~mtkd.errors.MtkdError` line naming the key (``distill.T: must be > 0``),
with the nearest valid name suggested for a misspelt key.
"""

from __future__ import annotations

import difflib
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, Field, ValidationError, create_model, field_validator, model_validator

from mtkd.data import CustomTask
from mtkd.errors import MtkdError
from mtkd.schema import RandomInit, Strict, TrainArgs  # noqa: F401  (RandomInit, TrainArgs: re-exported)
from mtkd.teachers import TEACHER_KINDS, HFTeacher, PrecomputedTeacher, SklearnTeacher  # noqa: F401  (re-exported)

PARAMS_FILE = "params.yaml"


# Teacher kinds own their params blocks (mtkd.teachers); the union is built from the registry,
# so a new kind needs no edit here.
TEACHER_MODELS: dict[str, type[Strict]] = {name: type(kind).Params for name, kind in TEACHER_KINDS.items()}
Teacher = Annotated[Union[tuple(TEACHER_MODELS.values())], Field(discriminator="kind")]


class Data(Strict):
    tasks: list[str] = Field(min_length=1)
    split_seed: int = 13
    validation_fraction: float = Field(0.1, gt=0, lt=0.5)
    test_fraction: float = Field(0.1, gt=0, lt=0.5)
    max_examples: int | None = Field(None, ge=30)
    # Local GLUE-schema files per task: {task: {train: path, validation: path, ...}}.
    local_files: dict[str, dict[str, str]] = Field(default_factory=dict)
    # Tasks declared here, run when named in `tasks`: {name: local files or a hub dataset, columns, labels}.
    custom: dict[str, CustomTask] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _custom_tasks(self):
        from mtkd.data import _CUSTOM_NAME, TASKS

        for name, spec in self.custom.items():
            if name in TASKS:
                raise MtkdError(f"data.custom.{name}: '{name}' is a built-in task; give the custom task another name")
            if not _CUSTOM_NAME.fullmatch(name):
                raise MtkdError(f"data.custom.{name}: a task name is a letter, then letters, digits or _"
                                " (it names files and stages)")
            spec.check(f"data.custom.{name}")
        return self


class Student(TrainArgs):
    model_name_or_path: str | None = None
    random_init: RandomInit | None = None
    # Build a DistilBERT from these layers of a BERT checkpoint (DistilBERT's own recipe).
    init_layers: list[int] | None = None
    trust_remote_code: bool = False
    # Train everything but the word-embedding matrix (measured +45% student throughput on CPU).
    freeze_word_embeddings: bool = False

    @model_validator(mode="after")
    def _one_source(self):
        if (self.model_name_or_path is None) == (self.random_init is None):
            raise ValueError("give exactly one of model_name_or_path or random_init")
        if self.init_layers is not None and self.random_init is not None:
            raise ValueError("init_layers needs model_name_or_path, not random_init")
        return self


class TransferParams(Strict):
    """``distill.transfer`` (issue #17): what a ``<strategy>+transfer`` student is distilled on besides train.

    ``copies`` augmented copies of each train text (``operations``: per-word rates of the EDA-style
    perturbations in :mod:`mtkd.transfer`, drawn from ``seed``) and/or the texts of ``unlabelled_file``.
    """

    copies: int = Field(2, ge=0)
    operations: dict[str, float] = Field(default_factory=lambda: {"delete": 0.1, "swap": 0.1, "mask": 0.1})
    seed: int = 0
    unlabelled_file: str | None = None

    @model_validator(mode="after")
    def _something_to_transfer(self):
        from mtkd.transfer import check_operations  # the one check of the augmentations (transfer_set runs it too)

        if self.copies < 1 and self.unlabelled_file is None:
            raise MtkdError("distill.transfer.copies: must be >= 1 (0 only with an unlabelled_file), got "
                            f"{self.copies}")
        if self.copies >= 1:
            check_operations(self.operations)
        return self


class DistillBase(Strict):
    """What every distilling strategy shares; each strategy's own block is added from the registry."""

    strategies: list[str] = Field(min_length=1)
    T: Union[float, dict[str, float]] = 6.0
    alpha: float = 0.7
    # constant: α throughout. linear: teacher annealing, α decays linearly from `alpha` to 0
    # over training, so the student leans on the teachers early and on the labels late.
    alpha_schedule: Literal["constant", "linear"] = "constant"
    # The teachers a multi-teacher strategy fuses (null: every teacher). A reference teacher such as
    # `human` can then have its own student (single_<t>) without entering the fusions it is compared with.
    fused_teachers: list[str] | None = None
    # What `<strategy>+transfer` students distil on besides train (unused without such a strategy).
    transfer: TransferParams = Field(default_factory=TransferParams)

    @field_validator("T")
    @classmethod
    def _positive_T(cls, v):
        values = v.values() if isinstance(v, dict) else [v]
        if any(t <= 0 for t in values):
            raise ValueError("temperature must be > 0")
        return v

    @field_validator("alpha")
    @classmethod
    def _alpha_range(cls, v):
        if not 0.0 <= v <= 1.0:
            raise ValueError("must lie in [0, 1]")
        return v

    def fused(self, teachers: list[str]) -> list[str]:
        """The teachers a fusion reads, in ``teachers``' order."""
        return list(teachers) if self.fused_teachers is None else [t for t in teachers if t in self.fused_teachers]

    @property
    def uses_transfer(self) -> bool:
        """Whether a strategy distils on the transfer set (the pipeline then builds it)."""
        from mtkd.fusion import transfer_base

        return any(transfer_base(s) is not None for s in self.strategies)

    def temperature(self, strategy: str) -> float:
        from mtkd.fusion import transfer_base

        if isinstance(self.T, dict):
            if strategy not in self.T and transfer_base(strategy) in self.T:  # a variant takes its strategy's T
                strategy = transfer_base(strategy)
            if strategy not in self.T:
                raise MtkdError(f"distill.T: no temperature for strategy '{strategy}' in the map")
            return float(self.T[strategy])
        return float(self.T)


def _distill_model() -> type[DistillBase]:
    """``distill``: the shared keys plus one block per strategy that owns one (``distill.gating``, …)."""
    from mtkd.fusion import STRATEGIES

    own = {s.own_params: (s.Params, s.Params()) for s in STRATEGIES.values() if s.own_params}
    return create_model("Distill", __base__=DistillBase, **own)


Distill = _distill_model()


class Runtime(Strict):
    num_threads: int = Field(2, ge=1)
    # bf16 autocast: `auto` turns it on where it measured faster for these small models, the CPU
    # (2-5x, FACTS), and off on CUDA, where a 3-layer student is launch-bound and autocast's casts
    # halve its throughput (bench/results/gpu/cuda-h200-warm.md: 1,471 vs 2,886 ex/s). true/false force it.
    bf16: Union[Literal["auto"], bool] = "auto"
    length_bucketing: bool = True
    # Train with an input embedding of only the token rows the task's texts use, written back into
    # the full matrix before saving (mtkd.models.CompactVocabulary): same predictions, less dense work.
    compact_vocabulary: bool = True
    # Seeds trained side by side in this many worker processes of num_threads / seed_workers
    # threads each (one CPU process only): small students use one thread poorly, two processes well.
    seed_workers: int = Field(1, ge=1)
    # Command prefix that starts the training stages (train_teachers, extract_logits, distill):
    # `python` for one process; `torchrun --nproc_per_node 8` or `accelerate launch ...` to
    # scale a stage across processes, GPUs or nodes (mtkd.engine). Stage commands are written
    # by `python -m mtkd.pipeline`, so re-run it after changing this.
    launcher: str = Field("python", min_length=1)

    @field_validator("bf16", mode="before")
    @classmethod
    def _bf16(cls, v):
        if v == "auto" or isinstance(v, bool):
            return v
        raise ValueError("must be true, false or auto")

    @field_validator("launcher")
    @classmethod
    def _launcher(cls, v):
        import shlex

        try:
            words = shlex.split(v)
        except ValueError as exc:
            raise ValueError(f"not a shell command ({exc})") from None
        known = ("python", "python3", "torchrun", "accelerate")
        if not words or Path(words[0]).name not in known:
            raise ValueError(f"must start with one of {', '.join(known)} (it runs `<launcher> -m stages.<name>`)")
        if words[0] == "accelerate" and words[1:2] != ["launch"]:
            raise ValueError("an accelerate launcher is `accelerate launch [options]`")
        return v


class Params(Strict):
    seeds: list[int] = Field(min_length=1)
    data: Data
    teachers: dict[str, Teacher] = Field(min_length=1)
    student: Student
    distill: Distill
    runtime: Runtime = Runtime()

    @field_validator("teachers", mode="before")
    @classmethod
    def _kinds(cls, v):
        if isinstance(v, dict):
            for name, cfg in v.items():
                kind = cfg.get("kind") if isinstance(cfg, dict) else None
                if kind not in TEACHER_KINDS:
                    raise ValueError(
                        f"teachers.{name}.kind: unknown teacher kind {kind!r}{_suggest(kind, TEACHER_KINDS)}"
                        f" (known: {', '.join(sorted(TEACHER_KINDS))})"
                    )
        return v

    @field_validator("seeds")
    @classmethod
    def _unique_seeds(cls, v):
        if len(set(v)) != len(v):
            raise ValueError("seeds must be distinct")
        return v

    @model_validator(mode="after")
    def _cross_check(self):
        from mtkd.data import TASKS
        from mtkd.fusion import get_strategy, strategy_names, transfer_base

        for task in self.data.tasks:
            if task not in TASKS and task not in self.data.custom:
                known = [*TASKS, *self.data.custom]
                raise MtkdError(
                    f"data.tasks: unknown task '{task}'{_task_hint(task, known)} (known: {', '.join(sorted(known))};"
                    " or declare it under data.custom)"
                )
        if len(set(self.data.tasks)) != len(self.data.tasks):
            raise MtkdError("data.tasks: names must be distinct")
        _check_local_files(self.data)
        for name, cfg in self.teachers.items():
            TEACHER_KINDS[cfg.kind].check_params(name, cfg, self.data.tasks)
        valid = strategy_names(list(self.teachers))
        for strategy in self.distill.strategies:
            if (transfer_base(strategy) or strategy) not in valid:
                raise MtkdError(
                    f"distill.strategies: unknown strategy '{strategy}'{_suggest(strategy, valid)}"
                    f" (known: {', '.join(valid)}; and <strategy>+transfer)"
                )
            if transfer_base(strategy) is not None:
                self._check_transfer_variant(get_strategy(strategy, list(self.teachers)))
        if len(set(self.distill.strategies)) != len(self.distill.strategies):
            raise MtkdError("distill.strategies: names must be distinct")
        if (fused := self.distill.fused_teachers) is not None:
            if unknown := [t for t in fused if t not in self.teachers]:
                raise MtkdError(f"distill.fused_teachers: unknown teacher '{unknown[0]}' (teachers: {', '.join(self.teachers)})")
            if len(set(fused)) != len(fused) or len(fused) < 2:
                raise MtkdError("distill.fused_teachers: needs two or more distinct teachers (null: every teacher)")
        for strategy in self.distill.strategies:
            get_strategy(strategy).check_settings(self.distill, self.distill.fused(list(self.teachers)))
        if isinstance(self.distill.T, dict):
            for key in self.distill.T:
                if (transfer_base(key) or key) not in valid:
                    raise MtkdError(f"distill.T: unknown strategy '{key}'{_suggest(key, valid)}")
            for strategy in self.distill.strategies:
                if get_strategy(strategy).uses_teachers and strategy not in self.distill.T \
                        and transfer_base(strategy) not in self.distill.T:
                    raise MtkdError(f"distill.T: the map has no temperature for strategy '{strategy}'")
        return self

    def _check_transfer_variant(self, variant) -> None:
        """A ``+transfer`` student needs a teacher term that every transfer example can have."""
        from mtkd.fusion import get_strategy, transfer_base

        key, name, base = "distill.strategies", variant.name, get_strategy(transfer_base(variant.name))
        if not base.uses_teachers:
            raise MtkdError(f"{key}: '{name}': a transfer set has no labels, so it needs a teacher ('{base.name}' has none)")
        if base.needs_train_labels:
            raise MtkdError(f"{key}: '{name}': {base.name}'s targets read the gold train labels, which transfer examples"
                            " do not have (use a label-free fusion: average, weighted, prob_average, best_per_sample, …)")
        for t, cfg in self.teachers.items():  # extract_logits scores the transfer set with every teacher
            if not TEACHER_KINDS[cfg.kind].scores_new_texts:
                raise MtkdError(f"{key}: '{name}': teacher '{t}' (kind {cfg.kind}) cannot score new texts, so it"
                                " can have no logits for a transfer set (a transfer run needs teachers that can)")


def _suggest(name: Any, candidates) -> str:
    if not isinstance(name, str):
        return ""
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


# GLUE configurations that are not classification tasks with labelled train data.
_GLUE_UNSUPPORTED = {"stsb": "a regression task (similarity scores 0-5)",
                     "ax": "a diagnostic test set (no train split, hidden labels)",
                     "mnli_matched": "MNLI's matched evaluation set alone ('mnli' reports matched and mismatched)",
                     "mnli_mismatched": "MNLI's mismatched evaluation set alone ('mnli' reports both)"}


def _task_hint(name: Any, known) -> str:
    """'SST-2' → did you mean 'sst2'; 'stsb' → why it is not a task here; else the nearest name."""
    if not isinstance(name, str):
        return ""
    key = name.strip().lower().replace("-", "")
    if key in _GLUE_UNSUPPORTED:
        return f" (GLUE's '{key}' is {_GLUE_UNSUPPORTED[key]}: only classification tasks are supported)"
    if key in known:
        return f" (did you mean '{key}'?)"
    return _suggest(key, known)


def _check_local_files(data: Data) -> None:
    """``data.local_files``: GLUE task names, each with exactly its GLUE splits (SPEC §3)."""
    from mtkd.data import GLUE, glue_splits

    for task, files in data.local_files.items():
        if task not in GLUE:
            raise MtkdError(f"data.local_files: '{task}' is not a GLUE task{_task_hint(task, GLUE)}"
                            f" (GLUE tasks: {', '.join(GLUE)})")
        expected = list(glue_splits(task).values())
        for split in files:
            if split not in expected:
                raise MtkdError(f"data.local_files.{task}: unknown split '{split}'{_suggest(split, expected)}"
                                f" (expected: {', '.join(expected)})")
        if missing := [s for s in expected if s not in files]:
            raise MtkdError(f"data.local_files.{task}: missing split(s) {', '.join(missing)} (expected: {', '.join(expected)})")


def _clean_loc(loc: tuple) -> list[str]:
    """Pydantic's error location without its union/discriminator tags."""
    parts = [str(p) for p in loc]
    if len(parts) > 2 and parts[0] == "teachers" and parts[2] in TEACHER_MODELS:
        del parts[2]
    return [p for p in parts if not p.startswith(("function-", "float", "dict["))]


def _format(error: dict, raw: dict) -> str:
    loc = _clean_loc(error["loc"])
    key = ".".join(loc) or "params"
    if error["type"] == "extra_forbidden":
        parent_key, bad = ".".join(loc[:-1]), loc[-1]
        model = _model_at(loc[:-1], raw)
        hint = _suggest(bad, list(model.model_fields)) if model else ""
        where = f"in '{parent_key}'" if parent_key else "at the top level"
        return f"{key}: unknown key {where}{hint}"
    msg = error["msg"].removeprefix("Value error, ")
    if error["type"] == "missing":
        return f"{key}: required key is missing"
    return f"{key}: {msg} (got {error.get('input')!r})"


def _model_at(loc: list[str], raw: dict) -> type[BaseModel] | None:
    """The schema class that validates the mapping at ``loc`` (for 'did you mean' hints)."""
    model: type[BaseModel] | None = Params
    if loc[:1] == ["teachers"] and len(loc) >= 2:
        kind = (raw.get("teachers", {}).get(loc[1]) or {}).get("kind")
        model, loc = TEACHER_MODELS.get(kind), loc[2:]
    values_of = None  # the model of a mapping's values (data.custom.<name>): the next part is a key
    for part in loc:
        if values_of is not None:
            model, values_of = values_of, None
            continue
        if model is None or part not in model.model_fields:
            return None
        ann = model.model_fields[part].annotation
        args = typing.get_args(ann)
        if typing.get_origin(ann) is dict and isinstance(args[1], type) and issubclass(args[1], BaseModel):
            values_of = args[1]
        model = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None
    return None if values_of is not None else model


def validate_params(raw: Any, source: str = PARAMS_FILE) -> Params:
    if not isinstance(raw, dict):
        raise MtkdError(f"{source}: must be a YAML mapping")
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        if first["type"] == "value_error" and isinstance(first.get("ctx", {}).get("error"), MtkdError):
            raise first["ctx"]["error"] from None
        raise MtkdError(f"{source}: {_format(first, raw)}") from None


def apply_profile(base: dict, patch: Any, source: str = "profile") -> dict:
    """``base`` with the overrides of ``patch`` (JSON Merge Patch, RFC 7386), ``base`` untouched.

    A mapping in the patch merges key by key into the base's mapping, ``null`` deletes a key,
    anything else replaces; keys keep the base's order and new keys follow in the patch's.
    So a profile holds only what differs from ``params.yaml``.
    """
    import copy

    if not isinstance(patch, dict):
        raise MtkdError(f"{source}: must be a YAML mapping of overrides")
    out = copy.deepcopy(base)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = apply_profile(out[key], value, f"{source}: {key}")
        else:
            out[key] = copy.deepcopy(value)
    return out


def _read_yaml(path: Path):
    if not path.is_file():
        raise MtkdError(f"{path}: file not found (run from the repository root)")
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise MtkdError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None


def load_profile(profile: str | Path, base: str | Path = PARAMS_FILE) -> dict:
    """The raw params of ``base`` with the overrides of ``profile`` applied (see :func:`apply_profile`)."""
    raw = _read_yaml(Path(base))
    if not isinstance(raw, dict):
        raise MtkdError(f"{base}: must be a YAML mapping")
    return apply_profile(raw, _read_yaml(Path(profile)), str(profile))


def load_params(path: str | Path = PARAMS_FILE) -> Params:
    path = Path(path)
    return validate_params(_read_yaml(path), str(path))
