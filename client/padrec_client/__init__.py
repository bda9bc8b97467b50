"""padrec-client: the typed gRPC client of the padrec recommender served by NVIDIA Triton.

    from padrec_client import RecommendClient

    with RecommendClient("localhost:8001") as client:
        rec = client.recommend(["12", "55", "9"], top_n=10)
        print(rec.items, rec.scores, rec.stats.tau)

Several replicas: `RecommendClient("host-a:8001,host-b:8001")` (or "dns:///name:8001") spreads
calls over them and fails over when one is unavailable. `AsyncRecommendClient` offers the same
calls for asyncio. Every error is a `RecommendError`;
`InvalidArgument`, `Unavailable` and `DeadlineExceeded` are the ones worth telling apart.
"""

from .aio import AsyncRecommendClient
from .errors import DeadlineExceeded, InvalidArgument, RecommendError, Unavailable
from .metadata import ModelMetadata, ServerMetadata, TensorSpec
from .params import DRAFTERS
from .replicas import HealthPolicy, ReplicaStats
from .result import DecodeStats, Recommendation, StreamedItem
from .retry import RetryPolicy
from .sync import RecommendClient

__version__ = "0.1.0"

__all__ = [
    "AsyncRecommendClient",
    "DRAFTERS",
    "DeadlineExceeded",
    "DecodeStats",
    "HealthPolicy",
    "InvalidArgument",
    "ModelMetadata",
    "RecommendClient",
    "RecommendError",
    "ReplicaStats",
    "Recommendation",
    "RetryPolicy",
    "ServerMetadata",
    "StreamedItem",
    "TensorSpec",
    "Unavailable",
]
