"""`padrec forward-costs`: target shapes are parsed and checked, and every shape gets its three timings."""

from __future__ import annotations

import json

import pytest

from padrec.cli import main
from padrec.forward_costs import forward_costs, parse_shape


def test_a_shape_is_d_model_by_layers_with_64_dim_heads_and_a_3x_ffn():
    config = parse_shape("256x8")
    assert (config.d_model, config.n_layers, config.n_heads, config.d_ff) == (256, 8, 4, 768)
    assert parse_shape("192X14").n_heads == 3
    for bad in ("256", "256x", "ax8", "100x8", "256x0", "32x2"):
        with pytest.raises(ValueError):
            parse_shape(bad)


def test_every_shape_is_timed_and_the_ratio_is_target_over_draft():
    rows = forward_costs([parse_shape("64x1"), parse_shape("128x2")], vocab_size=40, past=8, verify_tokens=3,
                         repeats=2, calls=2)
    assert [(r["shape"], r["n_layers"]) for r in rows] == [("64x1", 1), ("128x2", 2)]
    for row in rows:
        assert min(row["target_ms"], row["verify_ms"], row["draft_step_ms"]) > 0
        assert row["target_over_draft"] == pytest.approx(row["target_ms"] / row["draft_step_ms"])
    assert rows[1]["parameters"] > rows[0]["parameters"]


def test_the_command_writes_its_report_and_refuses_bad_input(tmp_path, capsys):
    out = tmp_path / "costs.json"
    assert main(["forward-costs", "--shapes", "64x1", "--vocab-size", "40", "--past", "8", "--repeats", "1",
                 "--calls", "2", "--json", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["threads"] == 1 and [row["shape"] for row in report["shapes"]] == ["64x1"]
    capsys.readouterr()
    assert main(["forward-costs", "--shapes", "64x1,nope"]) == 2
    assert "--shapes" in capsys.readouterr().err
    assert main(["forward-costs", "--shapes", "64x1", "--calls", "0"]) == 2
