"""All tunable settings in one place, as dataclasses with defaults.

Presets (`TARGET_PRESETS`) name the model sizes the project ships: `tiny` trains in seconds for the
tests, `default` is the shape of the shipped Sports, Toys, Yelp and ML-100K targets (8 layers
against the draft's 1; trainable on a 2-core CPU in about 45 minutes per dataset), `large` is for
GPU hosts. Beauty's shipped target overrides the preset on the command line: 128 wide x 12 layers
with item embeddings (docs/method.md, "Target"). At batch 1 on CPU both models are bound by reading
their weights and per-op overhead, so a default target forward measures only 5-8x a draft step,
depending on the machine (`padrec forward-costs`, docs/findings.md; 6.3x on the Xeon of
results/forward_costs_xeon-amx.json, Beauty's 128x12 9.8x), not the 10x issue #3 asks for; on the
EPYC of results/forward_costs.json 12 layers at d_model 256, or 14 at 192, cleared it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = REPO_ROOT / "data"
RAW_DATA_DIR = DATA_DIR / "raw"
# Derived, committed artifacts per dataset: split, semantic IDs, checkpoints.
ARTIFACTS_DIR = REPO_ROOT / "artifacts"


@dataclass(frozen=True)
class SplitConfig:
    """Leave-one-out split in time order: last item = test, second-last = validation."""

    max_history: int = 20  # items of history the model conditions on (the most recent ones)
    min_sequence: int = 3  # a user needs train + validation + test items


@dataclass(frozen=True)
class SemanticIdConfig:
    """Residual k-means over item-text embeddings, plus one level that makes every item unique."""

    levels: int = 3
    codebook_size: int = 256
    kmeans_iterations: int = 25
    attribute_weight: float = 0.5  # weight of the attribute (category/brand) part of the item vector
    attribute_dims: int = 64  # SVD dimensions kept of the attribute multi-hot matrix
    # weight of the interaction part (who consumed the item, from training sequences); 0 = text and
    # attributes only, as the committed semantic IDs were built
    interaction_weight: float = 0.0
    interaction_dims: int = 64  # SVD dimensions kept of the item x user matrix
    use_separator: bool = True  # an item is its codes followed by a separator token
    # the k-means levels share one code vocabulary (a token id no longer tells its level); the
    # collision level and the separator keep their own tokens (padrec/semantic_ids.py)
    shared_vocabulary: bool = False
    seed: int = 0
    encoder_batch_size: int = 256


WIDTH_STEP = 64  # head dimension of the shipped targets; other widths keep it (ModelConfig.with_width)


@dataclass(frozen=True)
class ModelConfig:
    """A Llama-style decoder: RMSNorm, rotary positions, SwiGLU, tied input/output embedding."""

    d_model: int = 256
    n_layers: int = 8
    n_heads: int = 4
    d_ff: int = 768
    max_seq_len: int = 384  # cache capacity: BOS + (history + longest list) items x tokens/item
    dropout: float = 0.0  # dropout costs ~25% of CPU training time; weight decay regularises instead
    # an embedding of the item itself, added to the input at each item's last token (its separator,
    # or its last code): the model can remember items, not only their codes; outputs stay codes
    item_embedding: bool = False
    # in training, each item mark is dropped (the position sees only its token) with this chance:
    # without it the item rows memorise the training sequences within a few epochs
    item_dropout: float = 0.5
    rope_base: float = 10_000.0
    norm_eps: float = 1e-6

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    def with_width(self, d_model: int) -> "ModelConfig":
        """This config at another width, shaped as the default target is: heads of WIDTH_STEP
        dimensions and a 3 x d_model FFN."""
        if d_model < WIDTH_STEP or d_model % WIDTH_STEP:
            raise ValueError(f"d_model must be a positive multiple of {WIDTH_STEP}, got {d_model}")
        return replace(self, d_model=d_model, n_heads=d_model // WIDTH_STEP, d_ff=3 * d_model)


TARGET_PRESETS: dict[str, ModelConfig] = {
    "tiny": ModelConfig(d_model=64, n_layers=2, n_heads=2, d_ff=128),
    "default": ModelConfig(),
    "large": ModelConfig(d_model=768, n_layers=16, n_heads=12, d_ff=2304),
}


@dataclass(frozen=True)
class DraftConfig:
    """A one-layer EAGLE-style draft, optionally with PAD-Rec's two position signals."""

    item_position: bool = True  # PAD-Rec (a): within-item slot embedding x learnable coefficient
    step_position: bool = True  # PAD-Rec (b): draft-depth embedding x context-driven gate
    k_max: int = 8  # most tokens one draft round may propose (a request's num_draft_tokens is at most this)
    # Draft depths whose step embedding training reaches (its unroll, `DraftTrainConfig.unroll_steps`):
    # deeper steps take the deepest trained one, not an embedding no gradient ever touched.
    step_depths: int = 3
    n_layers: int = 1
    item_coefficient_init: float = 0.1
    # std of the item- and step-position embeddings at initialisation (every other weight: 0.02).
    # At 0.02 and a coefficient of 0.1 the two terms start at 0.6% and 3% of the fused input's norm
    # and stay there; at 0.1 and 1.0 they start at about a quarter and the draft comes to rely on
    # them, with the same tau (docs/findings.md and results/README.md, "What the PAD-Rec drafts make of their position terms").
    position_init_std: float = 0.02


DRAFTERS: dict[str, DraftConfig] = {
    "eagle": DraftConfig(item_position=False, step_position=False),
    "item-only": DraftConfig(item_position=True, step_position=False),
    "step-only": DraftConfig(item_position=False, step_position=True),
    "padrec": DraftConfig(),
}


@dataclass(frozen=True)
class DraftTrainConfig:
    """Draft training by self-distillation: the target's own greedy lists for training users."""

    distill_users: int = 5000  # training users whose target-generated lists form the data (every committed draft)
    unroll_steps: int = 3  # draft steps trained jointly; depth >= 2 consumes the draft's own features
    # 3-4 epochs left every committed draft's accuracy still climbing; 9 took Yelp's PAD-Rec draft
    # from 0.75 to 0.88 and tau at k=4 from 2.83 to 3.28 (docs/findings.md, "Drafts trained 9 epochs")
    epochs: int = 9
    tokens_per_batch: int = 4096
    lr: float = 1e-3
    min_lr_ratio: float = 0.05
    warmup_steps: int = 100
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    feature_weight: float = 1.0  # SmoothL1 on predicted features (EAGLE)
    token_weight: float = 1.0  # cross-entropy against the target's next-token distribution
    seed: int = 0
    threads: int = 2
    bf16: bool | None = None  # bf16 autocast; None = where the CPU does bf16 in hardware (training/precision.py)


@dataclass(frozen=True)
class TrainConfig:
    """Target training: causal LM over windows of each user's training items."""

    epochs: int = 8
    window_items: int = 30  # items per training window; covers max_history + a list of 10
    window_stride_items: int = 15  # long sequences are cut into overlapping windows
    # each epoch, the last N items of every window in a fresh random order: the model learns a
    # history's near future as a set, so a greedy list's later items keep following the history
    # rather than the list's own previous items (0 = off; an experiment, docs/findings.md)
    shuffle_tail_items: int = 0
    tokens_per_batch: int = 6144
    lr: float = 2e-3
    min_lr_ratio: float = 0.05
    warmup_steps: int = 200
    weight_decay: float = 0.05
    grad_clip: float = 1.0
    seed: int = 0
    threads: int = 2
    bf16: bool | None = None  # bf16 autocast; None = where the CPU does bf16 in hardware (training/precision.py)
    max_minutes: float | None = None  # stop early (after the current epoch's evaluation)
    # Refit: train on each user's training items followed by the validation item, for a fixed number
    # of epochs chosen beforehand on validation (a run without refit), and keep the last epoch. The
    # test item stays held out; the validation NLL it logs is no longer a held-out measure.
    refit_with_valid: bool = False


TRAIN_PRESETS: dict[str, TrainConfig] = {
    "tiny": TrainConfig(epochs=2, tokens_per_batch=2048, warmup_steps=10, lr=3e-3),
    "default": TrainConfig(),
    "large": TrainConfig(epochs=30, lr=6e-4, warmup_steps=1000),
}


@dataclass(frozen=True)
class DecodeConfig:
    """How a recommendation list is generated."""

    top_n: int = 10
    max_top_n: int = 50
    exclude_history: bool = True
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    seed: int = 0
    beam_width: int = 20  # beams of a top-K request (mode "beam") and of the quality reference
    max_beam_width: int = 32  # the most a request may ask for (a beam request holds one cache row per beam)
    # prefixes the draft proposes per deeper level in speculative beam search; 0 = plain beam search,
    # the default because plain is the faster of the two on a 2-core CPU (docs/findings.md, issue 28)
    draft_width: int = 0
    max_draft_width: int = 32  # the most a beam request may ask for (each prefix holds a cache row per level)
    # the most draft tokens a token-tree round may draft (tree_width x num_draft_tokens): at most the
    # caches' 16 spare positions (`KVCache.slack`), which a round's tokens may run into at the list's end
    max_tree_nodes: int = 16
    # beta of the prefix-size prior: a code token's decoding score is its log-probability minus
    # beta x log(items below the prefix it leads to). Token-by-token greedy decoding otherwise
    # favours the prefixes with the most items under them (their probability is summed over more
    # items), not the most probable items; beta 1 would score a prefix by its mean item. 0 = off
    # (decode the target's own distribution). On validation lists (docs/findings.md, "The
    # prefix-size prior") a positive beta beat 0 on ML-100K, Sports and Beauty; the best beta
    # differs by dataset, and turning it on lowers tau with the committed drafts.
    prefix_size_penalty: float = 0.0


@dataclass(frozen=True)
class EvalConfig:
    ks: tuple[int, ...] = (5, 10)
    batch_size: int = 64
    decode: DecodeConfig = field(default_factory=DecodeConfig)


def with_overrides(config, **overrides):
    """A copy of a frozen config with the non-None overrides applied."""
    return replace(config, **{k: v for k, v in overrides.items() if v is not None})


@dataclass(frozen=True)
class ServingConfig:
    """The Triton deployment: cache slots, batching, defaults of per-request parameters.

    The target and each draft keep `target_slots` KV-cache rows; the batch decoder (`padrec_decode`)
    hands out rows [0, batch_slots), the streaming one the `stream_slots` after them, so the two
    never share a row. A list request holds one row from prefill to its last item, a beam request
    one per beam (so the stream has as many slots as the widest beam). Batching (how many
    requests one decode execution takes, how long the batcher waits) is Triton's, in the decode
    models' config.pbtxt.
    """

    batch_slots: int = 32
    stream_slots: int = 32
    num_draft_tokens: int = 4  # default per-request draft tokens
    drafter: str = "padrec"  # default drafter; each served drafter is a model `draft_<name>`
    drafters: tuple[str, ...] = ("padrec", "eagle")
    model_threads: int = 1  # ONNX Runtime intra-op threads of the target and draft models
    # Under load a batched target forward is no longer nearly free for extra tokens, so drafting
    # stops paying: an engine batch of more than `load_threshold` requests decodes with at most
    # `draft_tokens_under_load` draft tokens each (lossless either way). Measured on a 2-core CPU
    # (perf/REPORT.md as of commit c3d2cf0, "Under load", threshold 8): at concurrency 2, 4 and 8
    # PAD-Rec's engine batches (2.0, 2.7, 4.1 requests) cost 181, 158 and 143 ms per request against
    # plain's 175, 107 and 105, so only a lone request drafts. On a GPU, where extra verify tokens are
    # nearly free, raise it to where that table shows speculation stop paying. A deployment sets
    # both in the decode models' config.pbtxt (padrec.serving.parameters.serving_config).
    load_threshold: int = 1
    draft_tokens_under_load: int = 0
    # Beam requests score their prefixes as one token tree in one cache row (`BeamDecoder.one_row`):
    # a plain beam request then holds one slot instead of one per beam, and on a 2-core CPU searches
    # faster (docs/findings.md). Needs the target's tree forward, which export writes beside it; a
    # repository without one serves beams a row per beam, as does False.
    one_row_beams: bool = True

    @property
    def target_slots(self) -> int:
        return self.batch_slots + self.stream_slots
