"""GLUE (issue #5): loaders on GLUE-schema fixture files, splits and ids (SPEC §3), pair
tokenisation, primary metrics (SPEC §8), bad input, the GLUE profile, and a tiny end-to-end
`dvc repro` of two GLUE tasks with teachers of two tokenizer kinds (WordPiece and byte-level BPE).

Every file here is made in a temporary directory; nothing reaches a hub.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from tests.helpers import ROOT, make_repo, profile, run, write_table
from mtkd.data import GLUE, TASKS, glue_splits, load_split, prepare_task, report_splits
from mtkd.errors import MtkdError
from mtkd.metrics import classification_metrics
from mtkd.params import Data, HFTeacher, Runtime, load_params, validate_params

WORDS = ("the cat dog movie film plot actor good bad great awful fine dull question answer why how what "
         "is was are not very quite rather a an of in on at to fast slow bright dark river city").split()
TRICKY = ["NA", "null", "123", "1.50", "None", "true"]  # texts a careless reader turns into NaN, numbers or bools
FORMATS = {"sst2": "tsv", "cola": "jsonl", "mrpc": "parquet", "qqp": "tsv", "mnli": "jsonl",
           "qnli": "parquet", "rte": "tsv", "wnli": "jsonl"}
RUNTIME = Runtime(num_threads=1, bf16=True, length_bucketing=True)
TINY = {"num_hidden_layers": 1, "hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64}


def glue_frame(task: str, split: str, n: int, seed: int, unlabelled: int = 2, idx: bool = True) -> pd.DataFrame:
    """``n`` rows in GLUE's schema for ``task``; the last ``unlabelled`` rows have label −1."""
    (field_a, field_b), num_classes, *_ = GLUE[task]
    rng = np.random.default_rng(seed)

    def sentence(i):
        if i < len(TRICKY) and split == "train":
            return TRICKY[i]
        return " ".join(rng.choice(WORDS, size=int(rng.integers(3, 9))))

    rows = {field_a: [sentence(i) for i in range(n)]}
    if field_b:
        rows[field_b] = [sentence(n + i) for i in range(n)]
    labels = np.arange(n) % num_classes  # every class present
    labels[n - unlabelled:] = -1
    rows["label"] = labels
    if idx:
        rows["idx"] = np.arange(n)
    return pd.DataFrame(rows)



def glue_files(root: Path, task: str, fmt: str | None = None, n_train: int = 60, n_eval: int = 20, **kw) -> dict[str, str]:
    """GLUE-schema files for every GLUE split ``task`` needs, ``{split: path}``."""
    fmt = fmt or FORMATS[task]
    return {theirs: write_table(glue_frame(task, theirs, n_train if theirs == "train" else n_eval, seed=i, **kw),
                          root / task / f"{theirs}.{fmt}")
            for i, theirs in enumerate(glue_splits(task).values())}


def prepare(root: Path, task: str, files: dict[str, str], **data_kw):
    data = Data(tasks=[task], local_files={task: files}, **{"validation_fraction": 0.2, **data_kw})
    out = root / "prepared"
    meta = prepare_task(data, task, out / task)
    splits = {s: load_split(out, task, s) for s in ("train", "validation", *report_splits(task))}
    return meta, splits


# --------------------------------------------------------------------------------------------
# Loading and splitting


@pytest.mark.parametrize("task", list(GLUE))
def test_every_glue_task_loads_from_local_files(tmp_path, task):
    files = glue_files(tmp_path, task)
    meta, splits = prepare(tmp_path, task, files)
    (field_a, field_b), num_classes, primary, label_names = GLUE[task]
    assert meta["num_classes"] == num_classes and meta["label_names"] == list(label_names)
    assert meta["pair"] == (field_b is not None) == TASKS[task].pair
    expected_tests = {"test", "test_mismatched"} if task == "mnli" else {"test"}
    assert set(meta["splits"]) == {"train", "validation"} | expected_tests

    raw = {theirs: pd.read_parquet(p) if p.endswith(".parquet") else pd.read_json(p, lines=True, dtype=False)
           if p.endswith(".jsonl") else pd.read_csv(p, sep="\t", keep_default_na=False) for theirs, p in files.items()}
    # Labels −1 (unlabelled) are dropped; everything else is kept.
    labelled = {theirs: f[f["label"].astype(int) >= 0] for theirs, f in raw.items()}
    # A seeded slice of GLUE train is validation; GLUE validation (MNLI: matched, mismatched) is test.
    train_ids = {f"{task}-train-{i}" for i in labelled["train"]["idx"]}
    assert set(splits["train"]["id"]) | set(splits["validation"]["id"]) == train_ids
    assert not set(splits["train"]["id"]) & set(splits["validation"]["id"])
    for ours, theirs in glue_splits(task).items():
        if ours != "train":
            assert splits[ours]["id"].tolist() == [f"{task}-{theirs}-{i}" for i in labelled[theirs]["idx"]]
            assert splits[ours]["label"].tolist() == labelled[theirs]["label"].astype(int).tolist()
    for split, frame in splits.items():
        assert frame["label"].between(0, num_classes - 1).all(), split
        if field_b:
            assert frame["text_b"].notna().all() and (frame["text_b"].str.len() > 0).all()
        else:
            assert frame["text_b"].isna().all()
    # Text stays text whatever the file format: "NA", "null", "123" are sentences, not NaN or numbers.
    train_all = pd.concat([splits["train"], splits["validation"]])
    assert set(TRICKY) <= set(train_all["text_a"])


def test_mnli_reports_matched_and_mismatched(tmp_path):
    meta, splits = prepare(tmp_path, "mnli", glue_files(tmp_path, "mnli"))
    assert report_splits("mnli") == ("test", "test_mismatched")
    assert meta["splits"]["test"]["n"] == meta["splits"]["test_mismatched"]["n"] == 18
    # Both GLUE sets number their rows from 0: the ids must still differ.
    assert splits["test"]["id"].iloc[0] == "mnli-validation_matched-0"
    assert splits["test_mismatched"]["id"].iloc[0] == "mnli-validation_mismatched-0"
    assert meta["label_names"] == ["entailment", "neutral", "contradiction"]


def test_validation_is_a_seeded_fraction_of_train(tmp_path):
    files = glue_files(tmp_path, "sst2", n_train=400, unlabelled=0)
    _, a = prepare(tmp_path / "a", "sst2", files, split_seed=13)
    _, b = prepare(tmp_path / "b", "sst2", files, split_seed=13)
    _, c = prepare(tmp_path / "c", "sst2", files, split_seed=14)
    assert a["validation"]["id"].tolist() == b["validation"]["id"].tolist()  # same seed, same slice
    assert set(a["validation"]["id"]) != set(c["validation"]["id"])  # the seed picks it
    assert len(a["validation"]) / 400 == pytest.approx(0.2, abs=0.06)


def test_ids_are_glue_idx_and_survive_reordering_and_format(tmp_path):
    frame = glue_frame("mrpc", "train", 50, seed=0)
    base = {"train": write_table(frame, tmp_path / "a/train.tsv"),
            "validation": write_table(glue_frame("mrpc", "validation", 20, seed=1), tmp_path / "a/validation.tsv")}
    shuffled = {"train": write_table(frame.sample(frac=1.0, random_state=1), tmp_path / "b/train.parquet"),
                "validation": write_table(glue_frame("mrpc", "validation", 20, seed=1), tmp_path / "b/validation.jsonl")}
    _, a = prepare(tmp_path / "pa", "mrpc", base)
    _, b = prepare(tmp_path / "pb", "mrpc", shuffled)
    key = lambda s: pd.concat([s["train"], s["validation"]]).set_index("id").sort_index()  # noqa: E731
    pd.testing.assert_frame_equal(key(a), key(b))  # same id → same texts and label, whatever the row order
    pd.testing.assert_frame_equal(a["test"], b["test"])  # tsv and jsonl read alike


def test_ids_without_idx_are_row_numbers_before_dropping(tmp_path):
    files = {"train": write_table(glue_frame("rte", "train", 40, seed=0, idx=False), tmp_path / "train.jsonl"),
             "validation": write_table(glue_frame("rte", "validation", 12, seed=1, unlabelled=3, idx=False), tmp_path / "v.jsonl")}
    _, splits = prepare(tmp_path, "rte", files)
    assert splits["test"]["id"].tolist() == [f"rte-validation-{i}" for i in range(9)]  # rows 9-11 were −1


@pytest.mark.parametrize("suffix", ["jsonl", "tsv"])
def test_numeric_looking_texts_stay_verbatim(tmp_path, suffix):
    texts = ["1.50", "007", "2020", "1e3", "0"] * 8  # every sentence numeric: a column a reader may cast
    frame = pd.DataFrame({"sentence": texts, "label": np.arange(40) % 2, "idx": np.arange(40)})
    files = {"train": write_table(frame, tmp_path / f"train.{suffix}"),
             "validation": write_table(glue_frame("sst2", "validation", 10, seed=1), tmp_path / f"validation.{suffix}")}
    _, splits = prepare(tmp_path, "sst2", files)
    got = pd.concat([splits["train"], splits["validation"]]).set_index("id")["text_a"]
    assert all(got[f"sst2-train-{i}"] == t for i, t in enumerate(texts))


def test_label_names_map_to_glue_ids(tmp_path):
    frame = glue_frame("mnli", "train", 30, seed=0, unlabelled=0)
    names = np.array(["entailment", "neutral", "contradiction"])
    named = frame.assign(label=names[frame["label"]])
    files = {"train": write_table(named, tmp_path / "train.tsv"),
             **{s: write_table(glue_frame("mnli", s, 9, seed=1), tmp_path / f"{s}.tsv")
                for s in ("validation_matched", "validation_mismatched")}}
    _, splits = prepare(tmp_path, "mnli", files)
    got = pd.concat([splits["train"], splits["validation"]]).set_index("id")["label"]
    want = pd.Series(frame["label"].to_numpy(), index=[f"mnli-train-{i}" for i in frame["idx"]])
    assert got.sort_index().tolist() == want.sort_index().tolist()


# --------------------------------------------------------------------------------------------
# Tokenisation: sentence-pair tasks as pairs, for WordPiece and byte-level BPE tokenizers


def make_bpe_roberta(directory: Path, texts: list[str], num_labels: int | None = None, id2label: dict | None = None) -> Path:
    """A byte-level BPE tokenizer trained on ``texts`` and a tiny random-init RoBERTa, saved as a checkpoint.

    Without ``num_labels`` it is a base model (no classification head), like a hub checkpoint.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import RobertaConfig, RobertaForSequenceClassification, RobertaModel, RobertaTokenizerFast

    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=400, special_tokens=specials,
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    bpe.post_processor = processors.RobertaProcessing(("</s>", bpe.token_to_id("</s>")), ("<s>", bpe.token_to_id("<s>")))
    tokenizer = RobertaTokenizerFast(tokenizer_object=bpe, bos_token="<s>", eos_token="</s>", sep_token="</s>",
                                     cls_token="<s>", unk_token="<unk>", pad_token="<pad>", mask_token="<mask>")
    config = RobertaConfig(vocab_size=len(tokenizer), max_position_embeddings=130, type_vocab_size=1,
                           pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                           eos_token_id=tokenizer.eos_token_id, **TINY)
    if num_labels is None:
        model = RobertaModel(config)
    else:
        config.num_labels = num_labels
        if id2label:
            config.id2label, config.label2id = id2label, {v: k for k, v in id2label.items()}
        model = RobertaForSequenceClassification(config)
    model.save_pretrained(directory, safe_serialization=True)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def roberta_dir(tmp_path_factory):
    return make_bpe_roberta(tmp_path_factory.mktemp("roberta") / "tiny_roberta", [" ".join(WORDS)] * 5 + WORDS)


@pytest.mark.parametrize("task", list(GLUE))
def test_pair_tasks_tokenise_as_pairs(tmp_path, task, roberta_dir):
    from transformers import AutoTokenizer

    from mtkd.models import load_tokenizer
    from mtkd.training import encode

    _, splits = prepare(tmp_path, task, glue_files(tmp_path, task, n_train=30, n_eval=8))
    frame = splits["test"]
    pair = GLUE[task][0][1] is not None
    # WordPiece (BERT): [CLS] a [SEP] b [SEP] with token type 1 on the second segment.
    bert = load_tokenizer(HFTeacher(kind="hf", random_init=TINY))
    enc = encode(bert, frame, 64)
    assert enc.ids == frame["id"].tolist()
    for ids, types in zip(enc.input_ids, enc.token_type_ids):
        assert (ids == bert.sep_token_id).sum() == (2 if pair else 1)
        assert (types == 1).any() == pair
    # Byte-level BPE (RoBERTa): <s> a </s></s> b </s>, no token types.
    bpe = AutoTokenizer.from_pretrained(roberta_dir)
    enc = encode(bpe, frame, 64)
    for ids in enc.input_ids:
        assert (ids == bpe.eos_token_id).sum() == (3 if pair else 1)
        if pair:
            first = int(np.flatnonzero(ids == bpe.eos_token_id)[0])
            assert ids[first + 1] == bpe.eos_token_id  # the </s></s> separator


# --------------------------------------------------------------------------------------------
# Metrics (SPEC §8): the primary metric per task, with hand-computed values


def test_primary_metric_per_task():
    want = {"sst2": "accuracy", "mnli": "accuracy", "qqp": "f1", "mrpc": "f1", "cola": "mcc",
            "qnli": "accuracy", "rte": "accuracy", "wnli": "accuracy"}
    assert {t: TASKS[t].primary_metric for t in GLUE} == want


def test_binary_metrics_hand_computed():
    # references 1 0 0 1 1, predictions 1 1 0 0 1: TP 2, FP 1, FN 1, TN 1.
    refs = np.array([1, 0, 0, 1, 1])
    logits = np.eye(2)[[1, 1, 0, 0, 1]] * 3.0
    m = classification_metrics(logits, refs, 2)
    assert m["accuracy"] == pytest.approx(3 / 5)
    assert m["f1"] == pytest.approx(2 * 2 / (2 * 2 + 1 + 1), abs=1e-6)  # QQP/MRPC primary
    assert m["mcc"] == pytest.approx((2 * 1 - 1 * 1) / np.sqrt(3 * 3 * 2 * 2), abs=1e-6)  # CoLA primary: 1/6
    assert m["macro_f1"] == pytest.approx((2 / 3 + 1 / 2) / 2, abs=1e-6)  # class 0: TP 1, FP 1, FN 1


def test_three_class_metrics_hand_computed():
    # MNLI-like: 4 of 6 right; every class occurs twice in references and predictions.
    refs = np.array([0, 1, 2, 0, 1, 2])
    preds = np.array([0, 1, 1, 0, 2, 2])
    m = classification_metrics(np.eye(3)[preds], refs, 3)
    assert m["accuracy"] == pytest.approx(4 / 6)
    # Multiclass MCC = (c·s − Σ p_k t_k) / sqrt((s² − Σ p_k²)(s² − Σ t_k²)) = (4·6 − 12) / 24.
    assert m["mcc"] == pytest.approx(0.5, abs=1e-6)
    assert "f1" not in m  # positive-class F1 is for binary tasks only
    assert m["macro_f1"] == pytest.approx((1 + 0.5 + 0.5) / 3, abs=1e-6)


def test_mcc_of_a_constant_predictor_is_zero():
    m = classification_metrics(np.tile([[0.0, 1.0]], (6, 1)), np.array([0, 1, 1, 0, 1, 1]), 2)
    assert m["mcc"] == 0.0 and m["accuracy"] == pytest.approx(4 / 6)


# --------------------------------------------------------------------------------------------
# Bad input: one line each, before any training


def one_line(err: pytest.ExceptionInfo, *needles: str) -> str:
    text = str(err.value)
    assert "\n" not in text, text
    for needle in needles:
        assert needle in text, (needle, text)
    return text


def base_params(**data) -> dict:
    raw = profile("tiny")
    raw["data"] = {"tasks": ["mrpc"], **data}
    raw["teachers"] = {"tfidf_lr": {"kind": "sklearn"}}
    raw["distill"]["strategies"] = ["none", "single_tfidf_lr"]
    return raw


@pytest.mark.parametrize("tasks, needles", [
    (["mrcp"], ["data.tasks: unknown task 'mrcp'", "did you mean 'mrpc'?"]),
    (["SST-2"], ["unknown task 'SST-2'", "did you mean 'sst2'?"]),
    (["MNLI"], ["did you mean 'mnli'?"]),
    (["stsb"], ["'stsb' is a regression task", "only classification tasks"]),
    (["glue"], ["unknown task 'glue'", "known: "]),
    (["mrpc", "mrpc"], ["data.tasks: names must be distinct"]),
])
def test_unknown_task_is_one_line_with_a_hint(tasks, needles):
    with pytest.raises(MtkdError) as err:
        validate_params({**base_params(), "data": {"tasks": tasks}})
    one_line(err, *needles)


@pytest.mark.parametrize("local_files, needles", [
    ({"mrcp": {"train": "a", "validation": "b"}}, ["data.local_files: 'mrcp' is not a GLUE task", "did you mean 'mrpc'?"]),
    ({"mrpc": {"train": "a", "valid": "b"}}, ["data.local_files.mrpc: unknown split 'valid'", "did you mean 'validation'?"]),
    ({"mrpc": {"train": "a"}}, ["data.local_files.mrpc: missing split(s) validation"]),
])
def test_bad_local_files_is_one_line(local_files, needles):
    with pytest.raises(MtkdError) as err:
        validate_params(base_params(tasks=["mrpc"], local_files=local_files))
    one_line(err, *needles)


def test_pipeline_refuses_an_unknown_task(tmp_path, capsys):
    from mtkd.pipeline import main

    (tmp_path / "params.yaml").write_text(yaml.safe_dump({**base_params(), "data": {"tasks": ["qqq"]}}))
    assert main(["--params", str(tmp_path / "params.yaml"), "--out", str(tmp_path / "dvc.yaml")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("error: data.tasks: unknown task 'qqq'") and "'qqp'" in err
    assert not (tmp_path / "dvc.yaml").exists()


@pytest.mark.parametrize("mutate, needles", [
    (lambda f: f.drop(columns=["sentence2"]), ["GLUE mrpc train: missing columns ['sentence2']"]),
    (lambda f: f.assign(label="maybe"), ["GLUE mrpc train: label 'maybe' is neither a class id nor one of"]),
    (lambda f: f.assign(label=-1), ["GLUE mrpc train: no labelled rows"]),
])
def test_bad_glue_file_is_one_line(tmp_path, mutate, needles):
    files = {"train": write_table(mutate(glue_frame("mrpc", "train", 30, seed=0)), tmp_path / "train.tsv"),
             "validation": write_table(glue_frame("mrpc", "validation", 10, seed=1), tmp_path / "validation.tsv")}
    with pytest.raises(MtkdError) as err:
        prepare(tmp_path, "mrpc", files)
    one_line(err, *needles)
    assert not (tmp_path / "prepared" / "mrpc").exists()


@pytest.fixture(scope="module")
def prepared_mrpc(tmp_path_factory):
    root = tmp_path_factory.mktemp("mrpc")
    meta, splits = prepare(root, "mrpc", glue_files(root / "files", "mrpc", n_train=40, n_eval=10))
    return root, meta, splits


def test_classifier_with_another_label_count_is_refused(tmp_path, prepared_mrpc):
    from mtkd.teachers import TEACHER_KINDS

    _, meta, splits = prepared_mrpc
    nli = make_bpe_roberta(tmp_path / "nli", WORDS, num_labels=3,
                           id2label={0: "entailment", 1: "neutral", 2: "contradiction"})
    cfg = HFTeacher(kind="hf", model_name_or_path=str(nli), max_seq_length=32)
    out = tmp_path / "models/teachers/nli-mrpc"
    with pytest.raises(MtkdError) as err:
        TEACHER_KINDS["hf"].train("nli", cfg, meta, {s: splits[s] for s in ("train", "validation")}, out, RUNTIME)
    one_line(err, "teachers.nli.model_name_or_path", "3 labels (entailment, neutral, contradiction)",
             "the task has 2 classes")
    assert not out.exists()


def test_base_checkpoint_gets_a_new_head_of_any_size(roberta_dir):
    from mtkd.models import build_classifier

    for n in (2, 3):  # no classification head saved: any label count is fine
        model, _ = build_classifier(HFTeacher(kind="hf", model_name_or_path=str(roberta_dir)), n, seed=0, key="teachers.r")
        assert model.config.num_labels == n


def test_hub_id_not_in_the_offline_cache_is_one_line_from_the_stage(tmp_path, prepared_mrpc):
    """`train_teachers` with a hub id the (empty) cache does not hold, HF_HUB_OFFLINE=1: one line, exit 2."""
    root, _, _ = prepared_mrpc
    repo = tmp_path / "repo"
    for name in ("mtkd", "stages"):
        shutil.copytree(ROOT / name, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(root / "prepared", repo / "data" / "prepared")
    params = base_params(tasks=["mrpc"])
    params["teachers"] = {"bert_large": {"kind": "hf", "model_name_or_path": "bert-large-uncased"}}
    params["distill"]["strategies"] = ["none", "single_bert_large"]
    (repo / "params.yaml").write_text(yaml.safe_dump(params))
    proc = run([sys.executable, "-m", "stages.train_teacher", "--teacher", "bert_large", "--task", "mrpc"], repo,
               check=False, HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "empty_hf_home"), MTKD_NUM_THREADS="1")
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert errors == [lines[-1]] and "Traceback" not in proc.stderr, proc.stderr
    assert errors[0].startswith("error: teachers.bert_large.model_name_or_path: 'bert-large-uncased' is not available offline")
    assert not (repo / "models").exists()


# --------------------------------------------------------------------------------------------
# The GLUE profile (the seed's setting)


def test_glue_profile_is_the_seeds_setting():
    params = validate_params(profile("glue"))
    assert params.data.tasks == ["sst2", "mnli", "qqp", "mrpc"]
    assert {t: c.model_name_or_path for t, c in params.teachers.items()} == {
        "bert_large": "bert-large-uncased", "roberta_large": "roberta-large", "deberta_v3_base": "microsoft/deberta-v3-base"}
    assert params.student.model_name_or_path == "distilbert-base-uncased" and params.student.init_layers is None
    assert params.distill.T == 6.0 and params.distill.alpha == 0.7
    assert 42 in params.seeds and len(params.seeds) >= 3
    assert set(params.distill.strategies) >= {"none", "single_bert_large", "single_roberta_large",
                                              "single_deberta_v3_base", "average", "weighted", "best_per_sample", "gating"}
    assert params.data.local_files == {}  # GLUE from the hub


def test_glue_profile_generates_a_pipeline(tmp_path):
    raw = profile("glue")
    repo = make_repo(tmp_path / "repo", raw)
    names = [line.strip() for line in run("dvc stage list --name-only", repo).stdout.splitlines() if line.strip()]
    pairs = [f"{t}-{task}" for t in raw["teachers"] for task in raw["data"]["tasks"]]
    assert set(names) == ({"prepare", "configure", "analyze"} | {f"train_teachers@{p}" for p in pairs}
                          | {f"extract_logits@{p}" for p in pairs} | {f"distill@{s}" for s in raw["distill"]["strategies"]})


# --------------------------------------------------------------------------------------------
# End to end: mrpc + mnli from local files, a WordPiece and a byte-level BPE teacher


E2E_STRATEGIES = ["single_tiny_roberta", "average", "gating"]


@pytest.fixture(scope="module")
def glue_repo(tmp_path_factory):
    repo = tmp_path_factory.mktemp("glue_e2e") / "repo"
    repo.mkdir()
    local = {task: {theirs: str(Path(path).relative_to(repo)) for theirs, path in
                    glue_files(repo / "glue_data", task, fmt, n_train=120, n_eval=24).items()}
             for task, fmt in (("mrpc", "tsv"), ("mnli", "parquet"))}
    make_bpe_roberta(repo / "local_models" / "tiny_roberta", [" ".join(WORDS)] * 5 + WORDS)
    teacher = {"kind": "hf", "max_seq_length": 32, "num_train_epochs": 1, "per_device_train_batch_size": 16,
               "learning_rate": 1.0e-3}
    params = {
        "seeds": [0],
        "data": {"tasks": ["mrpc", "mnli"], "split_seed": 13, "validation_fraction": 0.2, "local_files": local},
        "teachers": {"tiny_bert": {**teacher, "random_init": {"model_type": "bert", **TINY}},  # WordPiece
                     "tiny_roberta": {**teacher, "model_name_or_path": "local_models/tiny_roberta"}},  # byte-level BPE
        "student": {"random_init": {"model_type": "distilbert", **TINY}, "max_seq_length": 32, "num_train_epochs": 1,
                    "per_device_train_batch_size": 16, "learning_rate": 1.0e-3},
        "distill": {"strategies": E2E_STRATEGIES, "T": 6.0, "alpha": 0.7, "gating": {"hidden_size": 8}},
        "runtime": {"num_threads": 1, "bf16": True, "length_bucketing": True},
    }
    make_repo(repo, params)  # copies the code, git + dvc init, `python -m mtkd.pipeline`
    proc = run("dvc repro", repo, MTKD_NUM_THREADS="1")
    return repo, proc.stdout + proc.stderr


def test_glue_e2e_runs_every_stage(glue_repo):
    repo, log = glue_repo
    stages = 1 + 2 * 2 * 2 + 1 + len(E2E_STRATEGIES) + 1  # prepare, teachers × tasks × 2, configure, distill, analyze
    assert len(set(re.findall(r"Running stage '([^']+)'", log))) == stages
    assert "glue_data/mrpc/train.tsv" in (repo / "dvc.yaml").read_text()  # local files are prepare's deps


def test_glue_e2e_teachers_use_two_tokenizer_kinds(glue_repo):
    repo, _ = glue_repo
    kinds = {t: json.loads((repo / f"models/teachers/{t}-mrpc/tokenizer.json").read_text())["model"]["type"]
             for t in ("tiny_bert", "tiny_roberta")}
    assert kinds == {"tiny_bert": "WordPiece", "tiny_roberta": "BPE"}


def test_glue_e2e_logits_keyed_by_example_id(glue_repo):
    repo, _ = glue_repo
    for task in ("mrpc", "mnli"):
        for teacher in ("tiny_bert", "tiny_roberta"):
            with np.load(repo / f"logits/{teacher}-{task}.npz", allow_pickle=False) as npz:
                for split in ("train", "validation", *report_splits(task)):
                    prepared = pd.read_parquet(repo / f"data/prepared/{task}/{split}.parquet")
                    assert npz[f"{split}/ids"].tolist() == prepared["id"].tolist(), (teacher, task, split)
                    assert npz[f"{split}/logits"].shape == (len(prepared), GLUE[task][1])
    with np.load(repo / "logits/tiny_roberta-mnli.npz", allow_pickle=False) as npz:
        assert str(npz["test_mismatched/ids"][0]).startswith("mnli-validation_mismatched-")


def test_glue_e2e_fusion_and_mnli_mismatched_metrics(glue_repo):
    repo, _ = glue_repo
    for teacher in ("tiny_bert", "tiny_roberta"):
        m = json.loads((repo / f"metrics/teachers/{teacher}-mnli.json").read_text())["mnli"]
        assert set(m) == {"validation", "test", "test_mismatched"}
        assert "f1" in json.loads((repo / f"metrics/teachers/{teacher}-mrpc.json").read_text())["mrpc"]["test"]
    for strategy in ("average", "gating"):
        m = json.loads((repo / f"metrics/distill/{strategy}.json").read_text())
        assert 0.0 <= m["mrpc"]["test"]["f1"]["mean"] <= 1.0  # MRPC's primary metric
        assert 0.0 <= m["mnli"]["test"]["accuracy"]["mean"] <= 1.0
        assert 0.0 <= m["mnli"]["test_mismatched"]["accuracy"]["mean"] <= 1.0
        assert set(m["mnli"]["fidelity"]) == {"fused", "tiny_bert", "tiny_roberta"}
    gating = json.loads((repo / "metrics/distill/gating.json").read_text())
    for task in ("mrpc", "mnli"):
        weights = gating[task]["seeds"]["0"]["gate_weights_train"]
        assert set(weights) == {"tiny_bert", "tiny_roberta"} and sum(weights.values()) == pytest.approx(1.0, abs=1e-4)
    summary = json.loads((repo / "metrics/summary.json").read_text())
    assert {"mrpc", "mnli"} <= set(summary)
