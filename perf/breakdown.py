"""Where a request's time goes, from the server's own statistics of a run, and how far the measured
speed-up is from the ideal one.

Per decode execution (one engine batch: a single request at concurrency 1) the decode model's time
splits into target calls (prefill and verification), draft calls, and the rest: the engine's own
Python (constraints, acceptance, batching) plus the BLS transport that the callee's request
durations do not see. Outside the decode model are gRPC, the client and, for `recommend`, pre/post-
processing and the ensemble: the client's mean latency minus the decode model's mean request duration.
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import fmean

from padrec.export.repository import TARGET_MODEL, draft_model_name, draft_step_model_name
from perf.analyzer import latency_summary
from perf.plan import BATCH_MODEL, STREAM_MODEL
from perf.server_stats import labels

NS_PER_MS = 1e6
DECODE_MODELS = {BATCH_MODEL: "padrec_decode", STREAM_MODEL: STREAM_MODEL}  # the stream model decodes itself


@dataclass(frozen=True)
class RunCosts:
    """A run's mean costs in ms: per request where it says so, else per decode execution."""

    requests: int
    executions: int
    queue_ms: float  # per request: waiting for the decode model (its batcher, an execution in progress)
    exec_ms: float  # per execution, of which:
    target_ms: float  # ... target calls (Triton's request durations of the BLS calls)
    draft_ms: float  # ... draft calls
    host_ms: float  # ... the rest: engine Python and BLS transport
    target_calls: float  # per execution
    draft_calls: float  # per execution
    outside_ms: float  # per request: everything outside the decode model

    @property
    def batch(self) -> float:
        """Mean requests per decode execution (engine batch size)."""
        return self.requests / self.executions


def run_costs(run: dict) -> RunCosts:
    """The costs of a measured run (see the module docstring for what each part holds)."""
    models = run["server"]["models"]
    decode = models[DECODE_MODELS[run["model"]]]
    target = models.get(TARGET_MODEL, {})
    # speculative beams and token trees draft through the step model, chains through the round
    stepped = run.get("draft_width") or run.get("tree_width")
    draft_model = draft_step_model_name(run["drafter"]) if stepped else draft_model_name(run["drafter"])
    draft = models.get(draft_model, {}) if run["k"] or run.get("draft_width") else {}
    requests, executions = int(decode["success_count"]), int(decode["execution_count"])
    exec_ms = decode["exec_compute_infer_ns"] / executions / NS_PER_MS
    target_ms = target.get("success_ns", 0.0) / executions / NS_PER_MS
    draft_ms = draft.get("success_ns", 0.0) / executions / NS_PER_MS
    decode_request_ms = decode["success_ns"] / requests / NS_PER_MS
    return RunCosts(
        requests=requests, executions=executions,
        queue_ms=decode["queue_ns"] / requests / NS_PER_MS,
        exec_ms=exec_ms, target_ms=target_ms, draft_ms=draft_ms, host_ms=exec_ms - target_ms - draft_ms,
        target_calls=target.get("success_count", 0.0) / executions,
        draft_calls=draft.get("success_count", 0.0) / executions,
        outside_ms=fmean(run["per_request"]["latency_ms"]) - decode_request_ms,
    )


@dataclass(frozen=True)
class TargetCost:
    """The target's cost at concurrency 1: one decoding round of plain decoding (1 chosen token,
    plus the forced tokens that ride along) and one prefill."""

    round_ms: float
    prefill_ms: float


def target_cost(plain: RunCosts, short: RunCosts) -> TargetCost:
    """Fit prefill + rounds x round_ms to two plain runs at concurrency 1 over the same users that
    differ only in top_n (so in rounds): `plain` at the benchmark's top_n, `short` at a small one."""
    rounds, short_rounds = plain.target_calls - 1, short.target_calls - 1
    round_ms = (plain.target_ms - short.target_ms) / (rounds - short_rounds)
    return TargetCost(round_ms, short.target_ms - short_rounds * round_ms)


@dataclass(frozen=True)
class SpeedUp:
    """A speculative configuration against plain decoding, both at concurrency 1."""

    tau: float  # mean of the requests' TAU: tokens per target forward, bonus included
    tau_effective: float  # plain's decoding rounds / this one's: what actually shortens decoding
    draft_ms: float  # T_draft(k): one draft call
    verify_ms: float  # T_verify: one verification call of the target (prefill excluded)
    ideal: float  # tau x T_target / (T_draft + T_verify)
    ideal_effective: float  # the same with tau_effective
    measured_p50: float  # plain's p50 latency / this one's
    measured_decode: float  # plain's decode execution time / this one's (what the breakdown covers)


def effective_tau(spec: RunCosts, plain: RunCosts) -> float:
    """Plain decoding's decoding rounds over a speculative run's, both at concurrency 1 over the same
    users: the rounds speculation actually saves. Lower than tau, which also credits the draft with
    tokens the catalogue constraints force (free in plain decoding) when it proposes them."""
    return (plain.target_calls - 1) / (spec.target_calls - 1)


def speed_up(spec: dict, plain: dict, cost: TargetCost) -> SpeedUp:
    """Measured and ideal speed-up of the run `spec` over the run `plain` (both at concurrency 1)."""
    spec_costs, plain_costs = run_costs(spec), run_costs(plain)
    rounds = spec_costs.target_calls - 1
    draft_ms = spec_costs.draft_ms / spec_costs.draft_calls
    verify_ms = (spec_costs.target_ms - cost.prefill_ms) / rounds
    tau = fmean(spec["per_request"]["tau"])
    tau_effective = effective_tau(spec_costs, plain_costs)
    per_round = draft_ms + verify_ms
    return SpeedUp(
        tau=tau, tau_effective=tau_effective, draft_ms=draft_ms, verify_ms=verify_ms,
        ideal=tau * cost.round_ms / per_round, ideal_effective=tau_effective * cost.round_ms / per_round,
        measured_p50=latency_summary(plain["csv"])["p50_ms"] / latency_summary(spec["csv"])["p50_ms"],
        measured_decode=plain_costs.exec_ms / spec_costs.exec_ms,
    )


def acceptance_by_depth(runs: list[dict]) -> dict[str, list[float]]:
    """Per drafter, the conditional acceptance rate (accepted / reached) of the 1st, 2nd, ... proposal
    of a round, from the decode models' `padrec_draft_depth_total` counters over `runs`."""
    totals: dict[tuple[str, int, str], float] = {}
    for run in runs:
        for series, value in run["server"]["counters"].items():
            name, tags = labels(series)
            if name == "padrec_draft_depth_total":
                key = (tags["drafter"], int(tags["depth"]), tags["fate"])
                totals[key] = totals.get(key, 0.0) + value
    rates: dict[str, list[float]] = {}
    for drafter, depth, fate in sorted(totals):
        if fate == "reached":
            rates.setdefault(drafter, []).append(totals.get((drafter, depth, "accepted"), 0.0) / totals[drafter, depth, fate])
    return rates
