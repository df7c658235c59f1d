"""Backends: the encoder layer shared by evaluation, mining, the layer ablation and ``poolattn encode``.

Modules (import from them directly; this package re-exports nothing):
``base`` (the ``Backend`` protocol, the poolattn and sentence-transformers backends),
``resolve`` (a model string -> a backend; design strings are parsed by ``poolattn.design``)
and ``fingerprint`` (the one hash of a model's weights).
"""
