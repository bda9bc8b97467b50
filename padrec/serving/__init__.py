"""Serving-side logic of the Triton deployment, free of Triton imports.

The model adapters under model_repository/ (and the ones `padrec export` writes) only convert
Triton tensors to and from numpy and call into this package: the catalogue, the request
parameters, the slot pool, the stateful target/draft services and the decoder that runs the
engine of `padrec.decoding` over calls to those services.
"""
