"""What a benchmark measures: the perf_analyzer runs it makes, each one configuration at one concurrency."""

from __future__ import annotations

from dataclasses import dataclass

BATCH_MODEL = "recommend"
STREAM_MODEL = "recommend_stream"
MIN_REQUESTS = 2


@dataclass(frozen=True)
class Mode:
    """How requests decode: a plain list (k = 0), a speculative list with `drafter` proposing k tokens
    per round (a token tree k deep and tree_width wide when tree_width > 0, its tree_budget likeliest
    nodes verified, 0: all), or (beam_width > 0) top-K by beam search of that many beams,
    speculative with `drafter` proposing draft_width prefixes per level when draft_width > 0."""

    drafter: str | None = None
    k: int = 0
    beam_width: int = 0
    draft_width: int = 0
    tree_width: int = 0
    tree_budget: int = 0
    tree_slot_widths: str = ""  # continuations per node by within-item slot, "1,3,2,1,1" ("": tree_width)

    @property
    def name(self) -> str:
        if self.beam_width:
            return (f"{self.drafter} beam B={self.beam_width} D={self.draft_width}" if self.draft_width
                    else f"beam B={self.beam_width}")
        if self.tree_width:
            return f"{self.drafter} k={self.k} {self.tree_shape}"
        return "plain" if self.k == 0 else f"{self.drafter} k={self.k}"

    @property
    def tree_shape(self) -> str:
        """A token tree's shape in words: "tree 3 wide by slot 1,3,2,1,1, 8 nodes"."""
        return (f"tree {self.tree_width} wide" + (f" by slot {self.tree_slot_widths}" if self.tree_slot_widths else "")
                + (f", {self.tree_budget} nodes" if self.tree_budget else ""))

    def parameters(self) -> list[tuple[str, object, str]]:
        """Triton request parameters (name, value, type) selecting this mode."""
        if self.beam_width:
            drafting = ([("draft_width", self.draft_width, "int"), ("drafter", self.drafter, "string")]
                        if self.draft_width else [])
            return [("mode", "beam", "string"), ("beam_width", self.beam_width, "int"), *drafting]
        if self.k == 0:
            return [("num_draft_tokens", 0, "int")]
        tree = ([("tree_width", self.tree_width, "int"), ("tree_budget", self.tree_budget, "int")]
                + ([("tree_slot_widths", self.tree_slot_widths, "string")] if self.tree_slot_widths else [])
                if self.tree_width else [])
        return [("num_draft_tokens", self.k, "int"), ("drafter", self.drafter, "string"), *tree]


PLAIN = Mode()


@dataclass(frozen=True)
class RunSpec:
    """One perf_analyzer invocation: a model, a mode, a concurrency and how many requests to measure."""

    model: str
    mode: Mode
    concurrency: int
    requests: int
    top_n: int

    @property
    def streaming(self) -> bool:
        return self.model == STREAM_MODEL

    @property
    def key(self) -> tuple:
        """What makes two runs the same measurement (the request count does not)."""
        return self.model, self.mode, self.concurrency, self.top_n

    @property
    def label(self) -> str:
        return f"{self.model} {self.mode.name} c={self.concurrency} top_n={self.top_n}"

    def parameters(self) -> list[tuple[str, object, str]]:
        return [*self.mode.parameters(), ("top_n", self.top_n, "int")]


@dataclass(frozen=True)
class Settings:
    """Everything a benchmark varies; the defaults are the full run (about 15 minutes on 2 busy cores)."""

    dataset: str = "beauty"
    users: int = 200  # test users whose histories are the input data, in test-set order
    concurrency: tuple[int, ...] = (1, 2, 4, 8, 16)
    drafters: tuple[str, ...] = ("eagle", "padrec")
    k: int = 4  # draft tokens of the speculative modes in the load runs
    sweep_k: tuple[int, ...] = (1, 2, 3, 4)  # tau against k, per drafter, at concurrency 1
    stream_concurrency: tuple[int, ...] = (1,)
    requests: int = 40  # measured requests per run at concurrency 1
    requests_per_client: int = 4  # ... and at least this many per concurrent client
    # Passes over the whole plan: a configuration's repeats lie minutes apart, so a drift in the
    # machine's background load spreads over all configurations (perf.merge combines them).
    repeats: int = 3
    warmup_requests: int = 4  # per model and drafter, before anything is measured
    top_n: int = 10
    # Plain decoding at this top_n beside plain at `top_n` separates the prefill from the
    # per-token cost of the target (perf.breakdown.target_costs).
    calibration_top_n: int = 1
    stream_modes: tuple[str, ...] = ("plain", "padrec")  # "plain", or a drafter at k
    # top-K by beam search (`recommend` with mode "beam") at these concurrency levels: a plain
    # request holds one decoding slot (one row per request, ServingConfig.one_row_beams), a
    # speculative one max(B, D); the batch decoder has ServingConfig.batch_slots (32), so concurrent
    # beam requests that one execution batches beyond them are searched in waves that fit
    beam_widths: tuple[int, ...] = (10, 20)
    beam_concurrency: tuple[int, ...] = (1, 16)
    # speculative beam search at the same concurrency levels, as (beam width, draft width) with the
    # PAD-Rec draft
    beam_drafts: tuple[tuple[int, int], ...] = ((10, 10), (20, 20))
    # token trees at concurrency 1, each drafter at k, as (tree width, tree budget: 0 = every node,
    # continuations per node by slot: "" = the width everywhere), beside the chain of the same k
    trees: tuple[tuple[int, int, str], ...] = ((3, 0, ""), (3, 8, ""), (3, 0, "1,3,2,1,1"))

    def __post_init__(self) -> None:
        # perf_analyzer reads the ensemble's per-model statistics right after a pass; with one request
        # the composing models' counters may not have moved yet, and it fails with "failed to find the
        # requested model version". From the second request on, the first one's counts are in.
        for name in ("requests", "warmup_requests"):
            if getattr(self, name) < MIN_REQUESTS:
                raise ValueError(f"{name} must be at least {MIN_REQUESTS} per run, got {getattr(self, name)}")
        widths = [*self.beam_widths, *(width for width, _ in self.beam_drafts)]
        if any(width < self.top_n for width in widths):
            raise ValueError(f"beam widths must be at least top_n ({self.top_n}), got {tuple(widths)}")
        if any(draft_width < 1 for _, draft_width in self.beam_drafts):
            raise ValueError(f"draft widths must be at least 1, got {self.beam_drafts}")
        if any(width < 1 or budget < 0 for width, budget, _ in self.trees):
            raise ValueError(f"tree widths must be at least 1 and budgets at least 0, got {self.trees}")
        if self.requests_per_client < 1:
            raise ValueError(f"requests_per_client must be at least 1, got {self.requests_per_client}")

    def speculative(self, k: int) -> list[Mode]:
        return [Mode(drafter, k) for drafter in self.drafters]

    def requests_at(self, concurrency: int) -> int:
        return max(self.requests, self.requests_per_client * concurrency)


def plan(settings: Settings) -> list[RunSpec]:
    """One pass: every configuration once, lowest concurrency first; at equal concurrency the modes
    alternate, so a drift in the machine's background load hits compared configurations alike."""
    runs: dict[tuple, RunSpec] = {}

    def add(model: str, mode: Mode, concurrency: int, top_n: int = settings.top_n) -> None:
        spec = RunSpec(model, mode, concurrency, settings.requests_at(concurrency), top_n)
        runs.setdefault(spec.key, spec)

    levels = set(settings.concurrency) | set(settings.stream_concurrency) | set(settings.beam_concurrency) | {1}
    for concurrency in sorted(levels):
        if concurrency in settings.concurrency:
            for mode in [PLAIN, *settings.speculative(settings.k)]:
                add(BATCH_MODEL, mode, concurrency)
        if concurrency == 1:
            add(BATCH_MODEL, PLAIN, 1)
            add(BATCH_MODEL, PLAIN, 1, settings.calibration_top_n)
            for k in settings.sweep_k:
                for mode in settings.speculative(k):
                    add(BATCH_MODEL, mode, 1)
            for width, budget, slot_widths in settings.trees:
                for drafter in settings.drafters:
                    add(BATCH_MODEL, Mode(drafter, settings.k, tree_width=width, tree_budget=budget,
                                          tree_slot_widths=slot_widths), 1)
        if concurrency in settings.beam_concurrency:
            for width in settings.beam_widths:
                add(BATCH_MODEL, Mode(beam_width=width), concurrency)
            for width, draft_width in settings.beam_drafts:
                add(BATCH_MODEL, Mode("padrec", beam_width=width, draft_width=draft_width), concurrency)
        if concurrency in settings.stream_concurrency:
            for name in settings.stream_modes:
                add(STREAM_MODEL, PLAIN if name == "plain" else Mode(name, settings.k), concurrency)
    return list(runs.values())


def warmups(runs: list[RunSpec], requests: int) -> list[RunSpec]:
    """A few unmeasured requests per model and drafter, so no measured run pays for a first call."""
    seen: dict[tuple, RunSpec] = {}
    for spec in runs:
        seen.setdefault((spec.model, spec.mode.drafter, spec.mode.beam_width > 0, spec.mode.tree_width > 0),
                        RunSpec(spec.model, spec.mode, 1, requests, spec.top_n))
    return list(seen.values())
