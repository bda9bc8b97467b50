"""The decoding engine: constraints, token choice, plain and speculative list generation.

Nothing here imports Triton: the offline benchmarks and the Triton BLS model host the same engine
and differ only in how they call the target and the draft.
"""
