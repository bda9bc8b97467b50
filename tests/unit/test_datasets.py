"""Dataset loading (built-in and generic format) and the leave-one-out split."""

import json

import pytest

from padrec.config import SplitConfig
from padrec.data.datasets import DatasetError, load_builtin, load_generic, read_interactions
from padrec.data.split import leave_one_out


@pytest.mark.parametrize(
    "name, users, items, interactions",
    [  # counts from data/SOURCES.md
        ("beauty", 22363, 12101, 198502),
        ("ml-100k", 943, 1682, 100000),
    ],
)
def test_builtin_counts(name, users, items, interactions):
    ds = load_builtin(name)
    assert len(ds.sequences) == users
    assert len(ds.items) == items
    assert sum(map(len, ds.sequences.values())) == interactions
    assert sum(1 for i in ds.items if ds.item_text.get(i)) >= items - 1  # one Beauty item has no text


def test_unknown_builtin_names_the_choices():
    with pytest.raises(DatasetError, match="beauty"):
        load_builtin("nope")


def test_generic_text_and_json_formats_agree(tmp_path):
    (tmp_path / "inter.txt").write_text("u1 a b c\nu2 b c d e\n")
    (tmp_path / "inter.json").write_text(json.dumps({"u1": ["a", "b", "c"], "u2": ["b", "c", "d", "e"]}))
    (tmp_path / "items.json").write_text(json.dumps({"a": {"title": "Alpha", "brand": "X"}, "b": {"title": "Beta"}}))
    txt = load_generic("t", tmp_path / "inter.txt", tmp_path / "items.json")
    js = load_generic("t", tmp_path / "inter.json")
    assert txt.sequences == js.sequences
    assert txt.item_text["a"] == "Alpha. X"
    assert txt.items == ["a", "b", "c", "d", "e"]


def test_generic_format_errors_are_clear(tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        read_interactions(tmp_path / "missing.txt")
    (tmp_path / "bad.txt").write_text("u1 a\nlonely\n")
    with pytest.raises(DatasetError, match="bad.txt:2"):
        read_interactions(tmp_path / "bad.txt")
    (tmp_path / "bad.json").write_text('{"u1": "a"}')
    with pytest.raises(DatasetError, match="JSON object"):
        read_interactions(tmp_path / "bad.json")


def test_leave_one_out_keeps_time_order_and_truncates_history(tmp_path):
    seq = [str(i) for i in range(30)]
    (tmp_path / "inter.txt").write_text("u " + " ".join(seq) + "\nshort a b\nv 0 1 2\n")
    split = leave_one_out(load_generic("t", tmp_path / "inter.txt"), SplitConfig(max_history=20))
    idx = {item: i for i, item in enumerate(split.item_ids)}
    test = {e.user: e for e in split.test}
    valid = {e.user: e for e in split.valid}
    assert "short" not in test  # two items cannot give train + validation + test
    assert test["u"].target == idx["29"] and valid["u"].target == idx["28"]
    assert test["u"].history == [idx[s] for s in seq[9:29]]  # the 20 most recent before the target
    assert valid["u"].history == [idx[s] for s in seq[8:28]]
    assert split.train["u"] == [idx[s] for s in seq[:28]]
    assert split.train["v"] == [idx["0"]]
