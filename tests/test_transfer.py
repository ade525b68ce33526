"""The transfer set's texts (issue #17): augmentation operations, copies, unlabelled files."""

import hashlib
import json

import numpy as np
import pandas as pd
import pytest

from mtkd.errors import MtkdError
from mtkd.transfer import (OPERATIONS, augment_text, check_operations, example_rng, read_unlabelled,
                           transfer_set)

WORDS = "the quick brown fox jumps over the lazy dog today".split()
MASK = "[MASK]"


def one_line_error(excinfo, *parts):
    message = str(excinfo.value)
    assert "\n" not in message
    for part in parts:
        assert part in message, message
    return message


def is_subsequence(small, big):
    it = iter(big)
    return all(any(w == b for b in it) for w in small)


# ---------------------------------------------------------------------------------------------
# Operations


def test_registry_order():
    assert list(OPERATIONS) == ["delete", "swap", "mask"]


@pytest.mark.parametrize("name", ["delete", "swap", "mask"])
def test_rate_zero_leaves_words(name):
    assert OPERATIONS[name](list(WORDS), 0.0, np.random.default_rng(0), MASK) == WORDS
    assert augment_text(" ".join(WORDS), {name: 0.0}, np.random.default_rng(0), MASK) == " ".join(WORDS)


@pytest.mark.parametrize("seed", range(20))
def test_delete_is_nonempty_subsequence(seed):
    out = OPERATIONS["delete"](list(WORDS), 0.5, np.random.default_rng(seed), MASK)
    assert 1 <= len(out) <= len(WORDS)
    assert is_subsequence(out, WORDS)


def test_delete_near_one_keeps_exactly_one_word_and_one_word_stays():
    for seed in range(10):
        out = OPERATIONS["delete"](list(WORDS), 0.999, np.random.default_rng(seed), MASK)
        assert len(out) == 1 and out[0] in WORDS
    assert OPERATIONS["delete"](["alone"], 0.999, np.random.default_rng(0), MASK) == ["alone"]
    assert OPERATIONS["delete"]([], 0.5, np.random.default_rng(0), MASK) == []


@pytest.mark.parametrize("seed", range(20))
def test_swap_moves_each_word_at_most_one_position(seed):
    words = [f"w{i}" for i in range(10)]  # distinct, so positions are unambiguous
    out = OPERATIONS["swap"](list(words), 0.5, np.random.default_rng(seed), MASK)
    assert sorted(out) == sorted(words)
    assert all(abs(out.index(w) - i) <= 1 for i, w in enumerate(words))


def test_swap_near_one_swaps_disjoint_neighbours():
    # every draw < 0.999 (almost surely): swap (0,1), skip to 2, swap (2,3), ...; the odd last word stays
    out = OPERATIONS["swap"](["a", "b", "c", "d", "e"], 0.999, np.random.default_rng(0), MASK)
    assert out == ["b", "a", "d", "c", "e"]


@pytest.mark.parametrize("seed", range(20))
def test_mask_keeps_length_and_words_or_token(seed):
    out = OPERATIONS["mask"](list(WORDS), 0.5, np.random.default_rng(seed), MASK)
    assert len(out) == len(WORDS)
    assert all(o == w or o == MASK for o, w in zip(out, WORDS))


def test_mask_near_one_masks_all():
    assert OPERATIONS["mask"](list(WORDS), 0.999, np.random.default_rng(3), MASK) == [MASK] * len(WORDS)


def test_augment_text_hand_computed():
    # The generator built by hand exactly as example_rng documents it: (seed, copy, sha256(id)[:8] little-endian).
    digest = int.from_bytes(hashlib.sha256(b"ex-1").digest()[:8], "little")
    draws = np.random.default_rng([7, 1, digest]).random(8)
    assert draws.round(4).tolist() == [0.1649, 0.0520, 0.9998, 0.3324, 0.9136, 0.7777, 0.3192, 0.4329]
    # delete 0.1 on "the cat sat down": draws 0-3 = .16 .05 .99 .33 -> "cat" (.05 < .1) dropped -> the sat down
    # swap 0.95: i=0 draw 4 = .91 < .95 -> swap -> sat the down; skip to i=2 = n-1: stop (no more draws)
    # mask 0.4: draws 5-7 = .78 .32 .43 -> only the 2nd word (.32 < .4) masked -> sat [MASK] down
    ops = {"mask": 0.4, "swap": 0.95, "delete": 0.1}
    assert augment_text("the cat sat down", ops, example_rng(7, "ex-1", 1), MASK) == "sat [MASK] down"


def test_registry_order_not_dict_order():
    a = augment_text(" ".join(WORDS), {"mask": 0.3, "delete": 0.3}, example_rng(1, "x", 1), MASK)
    b = augment_text(" ".join(WORDS), {"delete": 0.3, "mask": 0.3}, example_rng(1, "x", 1), MASK)
    assert a == b


def test_rate_zero_operation_draws_nothing():
    text = " ".join(WORDS)
    a = augment_text(text, {"delete": 0.3}, example_rng(1, "x", 1), MASK)
    assert augment_text(text, {"delete": 0.3, "swap": 0.0, "mask": 0.0}, example_rng(1, "x", 1), MASK) == a


def test_example_rng_depends_on_seed_id_and_copy_only():
    first = example_rng(0, "a", 1).random(3)
    assert np.array_equal(example_rng(0, "a", 1).random(3), first)
    for other in (example_rng(1, "a", 1), example_rng(0, "b", 1), example_rng(0, "a", 2)):
        assert not np.array_equal(other.random(3), first)


# ---------------------------------------------------------------------------------------------
# check_operations


@pytest.mark.parametrize("ops, parts", [
    ({"delet": 0.1}, ["distill.transfer.operations", "unknown augmentation 'delet'", "known: delete, swap, mask",
                      "did you mean 'delete'"]),
    ({"shuffle": 0.1}, ["distill.transfer.operations", "unknown augmentation 'shuffle'"]),
    ({"delete": -0.1}, ["distill.transfer.operations.delete: rate must lie in [0, 1), got -0.1"]),
    ({"mask": 1.0}, ["distill.transfer.operations.mask: rate must lie in [0, 1), got 1.0"]),
    ({"mask": "a lot"}, ["distill.transfer.operations.mask: rate must lie in [0, 1)"]),
    ({}, ["distill.transfer.operations", "no augmentation"]),
    ({"delete": 0.0, "swap": 0}, ["distill.transfer.operations: no augmentation: every rate is 0"]),
])
def test_check_operations_refuses(ops, parts):
    with pytest.raises(MtkdError) as excinfo:
        check_operations(ops)
    one_line_error(excinfo, *parts)


def test_check_operations_accepts_and_names_key():
    check_operations({"delete": 0.1, "mask": 0.0})
    with pytest.raises(MtkdError) as excinfo:
        check_operations({"nope": 0.1}, key="k.ops")
    assert str(excinfo.value).startswith("k.ops: ")


# ---------------------------------------------------------------------------------------------
# transfer_set

OPS = {"delete": 0.2, "swap": 0.2, "mask": 0.2}


def train_frame(pair=False, group=True):
    frame = pd.DataFrame({"id": ["e0", "e1", "e2"],
                          "text": ["a fine film indeed", "dull and long and slow", "a b c d e f g h"],
                          "label": [1, 0, 1]})
    if pair:
        frame["text_pair"] = ["it was good", "not worth it", "x y z"]
    if group:
        frame["group"] = ["g0", "g1", "g0"]
    return frame


def test_transfer_set_rows_ids_labels_groups():
    out = transfer_set(train_frame(), 2, OPS, seed=0, mask_token=MASK)
    assert list(out.columns) == ["id", "text", "label", "source_id", "group"]
    assert out["id"].tolist() == ["e0#aug1", "e0#aug2", "e1#aug1", "e1#aug2", "e2#aug1", "e2#aug2"]
    assert out["source_id"].tolist() == ["e0", "e0", "e1", "e1", "e2", "e2"]
    assert out["group"].tolist() == ["g0", "g0", "g1", "g1", "g0", "g0"]
    assert out["label"].dtype == np.int64 and (out["label"] == -1).all()
    assert all(t for t in out["text"])


def test_transfer_set_copy_is_augment_text_of_its_rng():
    out = transfer_set(train_frame(pair=True), 3, OPS, seed=5, mask_token=MASK)
    assert list(out.columns) == ["id", "text", "text_pair", "label", "source_id", "group"]
    row = out.set_index("id").loc["e1#aug3"]
    rng = example_rng(5, "e1", 3)
    assert row["text"] == augment_text("dull and long and slow", OPS, rng, MASK)
    assert row["text_pair"] == augment_text("not worth it", OPS, rng, MASK)  # same rng, after text


def test_transfer_set_without_group():
    out = transfer_set(train_frame(group=False), 1, OPS, seed=0, mask_token=MASK)
    assert list(out.columns) == ["id", "text", "label", "source_id"]


def test_transfer_set_deterministic_and_row_order_independent():
    train = train_frame(pair=True)
    a = transfer_set(train, 4, OPS, seed=0, mask_token=MASK)
    pd.testing.assert_frame_equal(a, transfer_set(train, 4, OPS, seed=0, mask_token=MASK))
    alone = transfer_set(train.iloc[[2]].reset_index(drop=True), 4, OPS, seed=0, mask_token=MASK)
    pd.testing.assert_frame_equal(alone, a[a["source_id"] == "e2"].reset_index(drop=True))
    reversed_ = transfer_set(train.iloc[::-1], 4, OPS, seed=0, mask_token=MASK)
    assert reversed_.set_index("id").sort_index().equals(a.set_index("id").sort_index())
    other = transfer_set(train, 4, OPS, seed=1, mask_token=MASK)
    assert other["text"].tolist() != a["text"].tolist()


def test_transfer_set_copies_differ():
    out = transfer_set(train_frame(), 4, {"swap": 0.5, "mask": 0.3}, seed=0, mask_token=MASK)
    assert out[out["source_id"] == "e2"]["text"].nunique() > 1


@pytest.mark.parametrize("copies", [0, -1])
def test_transfer_set_refuses_copies(copies):
    with pytest.raises(MtkdError) as excinfo:
        transfer_set(train_frame(), copies, OPS, seed=0, mask_token=MASK)
    one_line_error(excinfo, f"distill.transfer.copies: must be >= 1, got {copies}")


def test_transfer_set_checks_operations():
    with pytest.raises(MtkdError) as excinfo:
        transfer_set(train_frame(), 1, {"mask": 1.0}, seed=0, mask_token=MASK)
    one_line_error(excinfo, "distill.transfer.operations.mask")


# ---------------------------------------------------------------------------------------------
# read_unlabelled

TEXTS = ["first text", "second one", "NA", "123"]
TASK_IDS = {"t0", "t1"}


def write(path, fmt, rows, columns=("text",)):
    frame = pd.DataFrame(rows, columns=list(columns))
    if fmt == ".txt":
        path.write_text("".join(f"{r[0]}\n" for r in rows), encoding="utf-8")
    elif fmt == ".csv":
        frame.to_csv(path, index=False)
    elif fmt == ".tsv":
        frame.to_csv(path, sep="\t", index=False)
    elif fmt == ".jsonl":
        path.write_text("".join(json.dumps(dict(zip(columns, r))) + "\n" for r in rows), encoding="utf-8")
    else:
        frame.to_parquet(path, index=False)
    return path


@pytest.mark.parametrize("fmt", [".txt", ".csv", ".tsv", ".jsonl", ".parquet"])
def test_read_each_format_default_ids(tmp_path, fmt):
    path = write(tmp_path / f"u{fmt}", fmt, [[t] for t in TEXTS])
    out = read_unlabelled(path, TASK_IDS)
    assert list(out.columns) == ["id", "text", "label", "source_id"]
    assert out["id"].tolist() == ["unlabelled-0", "unlabelled-1", "unlabelled-2", "unlabelled-3"]
    assert out["text"].tolist() == TEXTS  # "NA" and "123" stay text
    assert out["source_id"].tolist() == out["id"].tolist()
    assert out["label"].dtype == np.int64 and (out["label"] == -1).all()


@pytest.mark.parametrize("fmt", [".csv", ".tsv", ".jsonl", ".parquet"])
def test_read_ids_and_pairs(tmp_path, fmt):
    rows = [["u1", "a", "b"], ["u2", "c", "d"]]
    path = write(tmp_path / f"u{fmt}", fmt, rows, ("id", "text", "text_pair"))
    out = read_unlabelled(path, TASK_IDS, pair=True)
    assert list(out.columns) == ["id", "text", "text_pair", "label", "source_id"]
    assert out["id"].tolist() == ["u1", "u2"] and out["text_pair"].tolist() == ["b", "d"]
    assert list(read_unlabelled(path, TASK_IDS).columns) == ["id", "text", "label", "source_id"]


def test_read_numeric_ids_become_text(tmp_path):
    path = tmp_path / "u.jsonl"
    path.write_text('{"id": 10, "text": "a"}\n{"id": 11, "text": "b"}\n', encoding="utf-8")
    assert read_unlabelled(path, TASK_IDS)["id"].tolist() == ["10", "11"]


def test_read_pair_texts_may_repeat_text(tmp_path):
    path = write(tmp_path / "u.csv", ".csv", [["same", "b"], ["same", "c"]], ("text", "text_pair"))
    assert len(read_unlabelled(path, TASK_IDS, pair=True)) == 2


def refuse(path, *parts, task_ids=TASK_IDS, pair=False):
    with pytest.raises(MtkdError) as excinfo:
        read_unlabelled(path, task_ids, pair=pair)
    return one_line_error(excinfo, f"distill.transfer.unlabelled_file {path}: ", *parts)


def test_read_refuses_missing_file_and_suffix(tmp_path):
    refuse(tmp_path / "absent.txt", "does not exist")
    (tmp_path / "u.xlsx").write_text("x")
    refuse(tmp_path / "u.xlsx", "unknown suffix '.xlsx'", ".txt, .csv, .tsv, .jsonl, .parquet")


def test_read_refuses_empty_line(tmp_path):
    path = tmp_path / "u.txt"
    path.write_text("one\ntwo\n   \nfour\n", encoding="utf-8")
    refuse(path, "empty text (line 3)")


@pytest.mark.parametrize("fmt", [".csv", ".jsonl", ".parquet"])
def test_read_refuses_empty_text_row(tmp_path, fmt):
    refuse(write(tmp_path / f"u{fmt}", fmt, [["a"], ["b"], [""]]), "empty text (row 3)")


@pytest.mark.parametrize("name, content, message", [
    ("u.jsonl", '{"text": "a"}\n{"text": null}\n', "empty text (row 2)"),
    ("u.txt", "alpha\nbeta\nalpha\n", "duplicate text 'alpha' (lines 1 and 3)"),
])
def test_read_refuses_null_and_duplicate_texts(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    refuse(path, message)


@pytest.mark.parametrize("rows, message", [([["a", "b"], ["c", ""]], "empty text_pair (row 2)"),
                                           ([["a", "b"], ["a", "b"]], "duplicate text 'a' (rows 1 and 2)")])
def test_read_refuses_empty_and_duplicate_pairs(tmp_path, rows, message):
    refuse(write(tmp_path / "p.csv", ".csv", rows, ("text", "text_pair")), message, pair=True)


def test_read_refuses_missing_columns(tmp_path):
    refuse(write(tmp_path / "u.csv", ".csv", [["a"]], ("sentence",)), "no column 'text' (columns: sentence)")
    refuse(write(tmp_path / "p.csv", ".csv", [["a"]]), "no column 'text_pair'", pair=True)


def test_read_refuses_no_rows(tmp_path):
    path = tmp_path / "u.txt"
    path.write_text("", encoding="utf-8")
    refuse(path, "holds no texts")


def test_read_refuses_duplicate_ids(tmp_path):
    refuse(write(tmp_path / "u.csv", ".csv", [["u1", "a"], ["u1", "b"]], ("id", "text")), "duplicate id 'u1' (row 2)")


def test_read_refuses_task_id_clash(tmp_path):
    path = write(tmp_path / "u.csv", ".csv", [["u1", "a"], ["t1", "b"]], ("id", "text"))
    refuse(path, "id 't1' is already an id of the task's examples")
    default = tmp_path / "d.txt"
    default.write_text("a\nb\n", encoding="utf-8")
    refuse(default, "id 'unlabelled-1'", task_ids={"unlabelled-1"})


def test_read_refuses_reserved_id(tmp_path):
    refuse(write(tmp_path / "u.csv", ".csv", [["x#aug1", "a"]], ("id", "text")), "id 'x#aug1' holds '#aug'", "row 1")


def test_read_refuses_empty_id(tmp_path):
    refuse(write(tmp_path / "u.csv", ".csv", [["u1", "a"], ["", "b"]], ("id", "text")), "empty id (row 2)")


def test_read_refuses_non_utf8(tmp_path):
    path = tmp_path / "u.txt"
    path.write_bytes(b"ok\n\xff\xfe bad\n")
    refuse(path, "not UTF-8")
