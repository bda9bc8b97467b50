"""A dataset's decoding defaults (decoding.json): the selection rule, saving and reading them back."""

import json

import pytest

from padrec.artifacts import ArtifactPaths, decode_defaults, save_decode_defaults
from padrec.config import DecodeConfig
from padrec.data.datasets import DatasetError
from padrec.evaluation import best_setting


def test_best_setting_ranks_by_recall_then_ndcg_then_smaller_beta():
    m = lambda r, n: {"recall@10": r, "ndcg@10": n}  # noqa: E731
    assert best_setting({0.0: m(0.10, 0.05), 0.5: m(0.12, 0.04), 1.0: m(0.11, 0.09)}) == 0.5
    assert best_setting({0.0: m(0.10, 0.05), 0.5: m(0.10, 0.06)}) == 0.5
    assert best_setting({1.0: m(0.10, 0.05), 0.25: m(0.10, 0.05), 0.5: m(0.10, 0.05)}) == 0.25


@pytest.fixture
def paths(tmp_path):
    paths = ArtifactPaths(tmp_path)
    paths.target.write_bytes(b"weights of one target")
    return paths


def test_without_a_file_the_class_defaults_hold(paths):
    assert decode_defaults(paths) == DecodeConfig()


def test_saved_defaults_come_back_with_their_evidence(paths):
    save_decode_defaults(paths, {"prefix_size_penalty": 0.5}, {"split": "valid", "users": 7})
    assert decode_defaults(paths) == DecodeConfig(prefix_size_penalty=0.5)
    saved = json.loads(paths.decoding.read_text())
    assert saved["chosen_on"] == {"split": "valid", "users": 7} and len(saved["target_sha256"]) == 64


def test_a_replaced_target_warns_that_the_choice_is_stale(paths):
    save_decode_defaults(paths, {"prefix_size_penalty": 0.5}, {})
    paths.target.write_bytes(b"weights of another target")
    with pytest.warns(UserWarning, match="tune-prior"):
        assert decode_defaults(paths).prefix_size_penalty == 0.5


def test_unknown_settings_are_refused(paths):
    with pytest.raises(ValueError, match="beam_widht"):
        save_decode_defaults(paths, {"beam_widht": 4}, {})
    paths.decoding.write_text(json.dumps({"defaults": {"beam_widht": 4}}))
    with pytest.raises(DatasetError, match="beam_widht"):
        decode_defaults(paths)
