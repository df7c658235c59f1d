"""Backends: the encoder layer shared by evaluation, mining, the layer ablation and ``poolattn encode``.

This package re-exports nothing: import from ``base`` (the ``Backend`` protocol and its two
implementations), ``resolve`` (a model string -> a backend) or ``fingerprint`` (of the weights).
"""
