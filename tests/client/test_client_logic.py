"""padrec_client's pure logic, no server: error mapping, parameter and history encoding, retry
decisions, the command line's argument parsing."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
from tritonclient.utils import InferenceServerException

from padrec_client import DeadlineExceeded, InvalidArgument, RecommendError, RetryPolicy, Unavailable
from padrec_client.cli import _request_params, build_parser, parse_history
from padrec_client.errors import error_for_status, from_triton
from padrec_client.params import history_array, request_parameters
from padrec_client.retry import CallBudget


@pytest.mark.parametrize(("status", "cls"), [
    ("StatusCode.INVALID_ARGUMENT", InvalidArgument),
    ("INVALID_ARG", InvalidArgument),  # Triton's own spelling
    ("StatusCode.UNAVAILABLE", Unavailable),
    ("StatusCode.DEADLINE_EXCEEDED", DeadlineExceeded),
    ("StatusCode.INTERNAL", RecommendError),
    ("StatusCode.CANCELLED", RecommendError),
    (None, RecommendError),
])
def test_status_strings_map_to_classes(status, cls):
    error = from_triton(InferenceServerException("unknown item ID 'x'", status=status))
    assert type(error) is cls
    assert str(error) == "unknown item ID 'x'"  # the server's words, without tritonclient's "[StatusCode...]"
    assert error.status == (status.rsplit(".", 1)[-1] if status else None)


def test_every_error_is_a_recommend_error():
    for status in ("StatusCode.INVALID_ARGUMENT", "StatusCode.UNAVAILABLE", "StatusCode.DEADLINE_EXCEEDED"):
        assert isinstance(error_for_status(status, "m"), RecommendError)


def test_parameters_travel_with_the_servers_types():
    params = request_parameters(5, {"temperature": 1, "top_p": np.float32(0.5), "seed": np.int64(3),
                                    "exclude_history": np.bool_(False), "drafter": "eagle", "num_draft_tokens": None})
    assert params == {"top_n": 5, "temperature": 1.0, "top_p": 0.5, "seed": 3, "exclude_history": False,
                      "drafter": "eagle"}
    assert type(params["temperature"]) is float and type(params["seed"]) is int
    assert type(params["exclude_history"]) is bool
    # A bool is never turned into a number, nor a float into an int: the server judges those.
    assert request_parameters(True, {})["top_n"] is True
    assert request_parameters(2.5, {})["top_n"] == 2.5


def test_unsendable_parameter_is_invalid():
    with pytest.raises(InvalidArgument, match="top_p"):
        request_parameters(10, {"top_p": [0.5]})


def test_history_array():
    array = history_array(["12", 55, b"9"])
    assert array.shape == (1, 3) and array.dtype == np.object_
    assert array.tolist() == [[b"12", b"55", b"9"]]
    assert history_array([]).shape == (1, 0)
    with pytest.raises(InvalidArgument, match="single string"):
        history_array("12,55")
    with pytest.raises(InvalidArgument):
        history_array([1.5])


def test_backoff_grows_then_caps():
    policy = RetryPolicy(attempts=6, initial_backoff=0.1, multiplier=2, max_backoff=0.5, jitter=0)
    assert [policy.backoff(r) for r in range(1, 6)] == pytest.approx([0.1, 0.2, 0.4, 0.5, 0.5])
    with pytest.raises(ValueError):
        RetryPolicy(attempts=0)


def test_budget_retries_unavailable_only_and_counts_attempts():
    budget = CallBudget(RetryPolicy(attempts=3, jitter=0), timeout=None)
    delays = []
    for _ in range(3):
        budget.attempt_timeout()
        delays.append(budget.retry_delay(Unavailable("down")))
    assert delays == pytest.approx([0.1, 0.2, None]) and budget.attempts == 3

    budget = CallBudget(RetryPolicy(attempts=3), timeout=None)
    budget.attempt_timeout()
    error = InvalidArgument("bad")
    assert budget.retry_delay(error) is None and error.attempts == 1
    assert budget.retry_delay(DeadlineExceeded("slow")) is None


def test_budget_gives_each_attempt_what_is_left_and_stops_at_the_deadline():
    budget = CallBudget(RetryPolicy(attempts=5, initial_backoff=10, jitter=0), timeout=1.0)
    assert 0 < budget.attempt_timeout() <= 1.0
    assert budget.retry_delay(Unavailable("down")) is None  # a 10 s wait would overrun the 1 s deadline
    expired = CallBudget(RetryPolicy(), timeout=0.0)
    with pytest.raises(DeadlineExceeded):
        expired.attempt_timeout()


def test_cli_history_parsing():
    assert parse_history("12,55,9") == ["12", "55", "9"]
    assert parse_history(" 12 , 55 ") == ["12", "55"]
    for bad in ("", "12,,9", "12,"):
        with pytest.raises(argparse.ArgumentTypeError, match="comma-separated"):
            parse_history(bad)


def test_cli_arguments():
    args = build_parser().parse_args(["recommend", "--url", "h:1", "--history", "12,55,9", "--top-n", "3",
                                      "--drafter", "eagle", "--num-draft-tokens", "0", "--temperature", "0.7",
                                      "--top-p", "0.9", "--seed", "4", "--include-history", "--json",
                                      "--retries", "5", "--timeout", "0"])
    assert (args.command, args.url, args.history, args.top_n) == ("recommend", "h:1", ["12", "55", "9"], 3)
    assert (args.drafter, args.num_draft_tokens, args.temperature, args.top_p, args.seed) == ("eagle", 0, 0.7, 0.9, 4)
    assert args.include_history and args.json and args.retries == 5 and args.timeout is None
    defaults = build_parser().parse_args(["stream", "--history", "1"])
    assert (defaults.url, defaults.top_n, defaults.drafter, defaults.timeout, defaults.retries) == (
        "localhost:8001", 10, None, 30.0, 3)
    beam = build_parser().parse_args(["recommend", "--history", "1", "--mode", "beam", "--beam-width", "8"])
    assert request_parameters(beam.top_n, _request_params(beam)) == {"top_n": 10, "mode": "beam", "beam_width": 8}
    assert "mode" not in request_parameters(10, _request_params(defaults))  # the server's default applies
    tree = build_parser().parse_args(["recommend", "--history", "1", "--tree-width", "3", "--tree-budget", "8",
                                      "--tree-slot-widths", "2,3,2,1,1", "--tree-min-prob", "0"])
    assert request_parameters(tree.top_n, _request_params(tree)) == {
        "top_n": 10, "tree_width": 3, "tree_budget": 8, "tree_slot_widths": "2,3,2,1,1", "tree_min_prob": 0.0}
    assert type(request_parameters(10, {"tree_min_prob": 0})["tree_min_prob"]) is float


@pytest.mark.parametrize("argv", [["recommend"], ["recommend", "--history", "1", "--drafter", "medusa"],
                                  ["recommend", "--history", "1", "--top-n", "ten"],
                                  ["recommend", "--history", "1", "--mode", "tree"], ["nope"]])
def test_cli_usage_errors_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(argv)
    assert exit_info.value.code == 2
    assert "usage:" in capsys.readouterr().err
