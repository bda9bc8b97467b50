"""padrec: speculative decoding with PAD-Rec position-aware drafting for generative list-wise
recommendation.

The package is the core library: data, semantic IDs, models, the decoding engine and training.
It never imports Triton's Python-backend utilities; the Triton models under `model_repository/`
are thin adapters over it.
"""

__version__ = "0.1.0"
