"""``poolattn`` with a failure injected on one rank, for the rank-safety tests (launched by
``accelerate launch``; not a test module). Usage: rank_fault.py WHERE RANK POOLATTN-ARGS...

WHERE is ``train`` (the rank raises as it enters training, while the others wait in its first
collective) or ``eval`` (the rank raises as it starts the evaluators, while the others serve
encoding requests).
"""

from __future__ import annotations

import os
import sys
from typing import Any

from poolattn.cli import main


def fail(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError(f"injected failure on rank {os.environ['RANK']}")


if __name__ == "__main__":
    where, rank, *argv = sys.argv[1:]
    if os.environ["RANK"] == rank:
        if where == "train":
            import poolattn.training.trainer as module

            module.train = fail
        else:
            import poolattn.evaluation.runner as module

            module.evaluate = fail
    sys.exit(main(argv))
