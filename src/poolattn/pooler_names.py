"""The pooler names, checked without torch: a misspelt ``model.pooling`` is refused at once.

``poolattn.pooling`` holds the classes (its import checks they match ``BUILTIN_POOLERS``); until
it is imported no user pooler can be registered, so the built-in names are all there are.
"""

from __future__ import annotations

import sys

from .config import check_choice

BUILTIN_POOLERS = ("eos", "mean", "weighted_mean", "latent", "multilayer", "nv_latent")


def pooler_names() -> tuple[str, ...]:
    """Every registered pooler name: the built-in ones and any a user registered since."""
    pooling = sys.modules.get("poolattn.pooling")
    registry = getattr(pooling, "POOLERS", {})
    return tuple(dict.fromkeys((*BUILTIN_POOLERS, *registry)))


def check_pooling(name: str, where: str = "model.pooling") -> None:
    """A ConfigError listing the registered poolers unless ``name`` is one of them."""
    check_choice(where, name, pooler_names())
