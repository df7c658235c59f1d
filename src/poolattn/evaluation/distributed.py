"""Evaluation spread over processes (``accelerate launch`` / ``torchrun``): encoding sharded.

Rank 0 runs the mteb evaluators and its embedding cache as a single process would; the texts it
must encode are cut into units, each exactly one chunk of ``EmbeddingModel.encode``
(``poolattn.model.length_chunks``), and shared out least-loaded first, so the scores are
bit-identical to one process. The requests travel on a gloo group with a long timeout (rank 0
may run an evaluator for a long time); when rank 0 fails, the other ranks raise its error.
"""

from __future__ import annotations

import functools
import logging
import os
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

GROUP_TIMEOUT = timedelta(hours=24)


@dataclass
class ProcessGroup:
    """This process's place among the launched processes, and the collectives the protocol uses."""

    rank: int = 0
    world: int = 1
    device: Any = "cpu"
    group: Any = None

    @property
    def main(self) -> bool:
        return self.rank == 0

    def broadcast(self, value: Any) -> Any:
        """Rank 0's ``value`` on every rank."""
        if self.world == 1:
            return value
        import torch.distributed as dist

        box = [value]
        dist.broadcast_object_list(box, src=0, group=self.group)
        return box[0]

    def scatter(self, values: list[Any] | None) -> Any:
        """``values[r]`` (given on rank 0) arrives on rank ``r``."""
        if self.world == 1:
            return values[0] if values else None
        import torch.distributed as dist

        box: list[Any] = [None]
        dist.scatter_object_list(box, values if self.main else None, src=0, group=self.group)
        return box[0]

    def gather(self, value: Any) -> list[Any] | None:
        """Every rank's ``value`` as a list on rank 0 (None elsewhere)."""
        if self.world == 1:
            return [value]
        import torch.distributed as dist

        out: list[Any] | None = [None] * self.world if self.main else None
        dist.gather_object(value, out, dst=0, group=self.group)
        return out

    def all_gather(self, value: Any) -> list[Any]:
        if self.world == 1:
            return [value]
        import torch.distributed as dist

        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, value, group=self.group)
        return out


@functools.cache
def process_group() -> ProcessGroup:
    """The launched processes (recognised by ``WORLD_SIZE``, set by ``accelerate launch`` and
    ``torchrun``; via accelerate's ``PartialState``), or a single one; created once."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return ProcessGroup()
    import torch.distributed as dist
    from accelerate import PartialState
    from accelerate.utils import parse_flag_from_env

    state = PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"))  # as the Accelerator reads it
    group = dist.new_group(backend="gloo", timeout=GROUP_TIMEOUT) if state.num_processes > 1 else None
    return ProcessGroup(state.process_index, state.num_processes, state.device, group)


class EncodeServer:
    """Encodes the units a request gives this rank; counts what it encoded."""

    def __init__(self, backend: Any) -> None:
        self.backend = backend
        self.encoded = 0

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        try:
            options = {key: request[key] for key in ("query", "instruction", "batch_size")}
            vectors = [self.backend.encode(unit, **options) for unit in request["units"]]
        except Exception as exc:  # sent to rank 0, which raises it
            return {"error": f"{type(exc).__name__}: {exc}"}
        self.encoded += sum(len(unit) for unit in request["units"])
        return {"vectors": vectors}

    def serve(self, group: ProcessGroup) -> int:
        """Non-zero ranks: answer rank 0's requests until it says stop; returns texts encoded.
        Raises rank 0's error when it says the evaluation failed."""
        while True:
            request = group.scatter(None)
            if request["op"] == "fail":
                raise RuntimeError(f"evaluation failed on rank 0: {request['error']}")
            if request["op"] == "stop":
                group.gather({"encoded": self.encoded})
                return self.encoded
            group.gather(self.handle(request))


class ShardedBackend:
    """Rank 0's backend: the wrapped model's identity, with ``encode`` spread over all ranks."""

    def __init__(self, backend: Any, group: ProcessGroup, fingerprint: str) -> None:
        self.backend = backend
        self.group = group
        self.name = backend.name
        self.uses_instructions = backend.uses_instructions
        self._fingerprint = fingerprint
        self.server = EncodeServer(backend)
        self.assigned = [0] * group.world

    def fingerprint(self) -> str:
        return self._fingerprint

    def describe(self) -> dict[str, Any]:
        return self.backend.describe()

    def encode(
        self, texts: list[str], *, query: bool, instruction: str | None, batch_size: int
    ) -> np.ndarray:
        from ..model import length_chunks

        shares: list[list[list[int]]] = [[] for _ in range(self.group.world)]
        for unit in length_chunks(texts, batch_size):  # exactly encode()'s chunks
            rank = min(range(self.group.world), key=lambda r: (self.assigned[r], r))
            shares[rank].append(unit)
            self.assigned[rank] += len(unit)
        options = {"query": query, "instruction": instruction, "batch_size": batch_size}
        requests = [
            {"op": "encode", "units": [[texts[i] for i in unit] for unit in share], **options}
            for share in shares
        ]
        replies = self.group.gather(self.server.handle(self.group.scatter(requests)))
        out: np.ndarray | None = None
        for rank, (share, reply) in enumerate(zip(shares, replies or [], strict=True)):
            if "error" in reply:
                raise RuntimeError(f"encoding on rank {rank} failed: {reply['error']}")
            for unit, vectors in zip(share, reply["vectors"], strict=True):
                if out is None:
                    out = np.zeros((len(texts), vectors.shape[1]), dtype=np.float32)
                out[unit] = vectors
        return out if out is not None else np.zeros((0, 0), dtype=np.float32)

    def fail(self, error: str) -> None:
        """Release the other ranks with rank 0's error, which they raise."""
        self.group.scatter([{"op": "fail", "error": error}] * self.group.world)

    def stop(self) -> list[int]:
        """Release the other ranks; returns the texts each rank encoded (rank 0 first)."""
        self.group.scatter([{"op": "stop"}] * self.group.world)
        replies = self.group.gather({"encoded": self.server.encoded}) or []
        return [int(r["encoded"]) for r in replies]


def evaluate(model: Any, output_dir: str | Path, **kwargs: Any) -> dict[str, Any] | None:
    """``poolattn.evaluation.evaluate`` (same arguments) on one process, or sharded over the
    launched processes, the model on this process's GPU when there is one. Rank 0 returns the
    ``run.json`` content (with ``distributed``: processes, texts encoded per rank), the other
    ranks None once rank 0 is done."""
    import torch

    from ..backends.base import as_backend
    from ..backends.resolve import load_backend
    from ..eval_results import EVAL_RUN_FILE
    from ..io import write_json_atomic
    from .runner import evaluate as evaluate_one

    group = process_group()
    if group.world == 1 and not torch.cuda.is_available():
        return evaluate_one(model, output_dir, **kwargs)
    source = model if isinstance(model, str) else None
    backend = load_backend(model) if isinstance(model, str) else as_backend(model)
    if hasattr(getattr(backend, "model", None), "to"):
        backend.model.to(group.device if group.world > 1 else "cuda")  # this rank's GPU
    sharded = None
    if group.world > 1:
        fingerprints = group.all_gather(backend.fingerprint())
        if len(set(fingerprints)) > 1:
            raise RuntimeError(
                f"the {group.world} processes loaded different models (fingerprints {sorted(set(fingerprints))}); "
                "every rank must evaluate the same weights"
            )
        if not group.main:
            EncodeServer(backend).serve(group)
            return None
        sharded = ShardedBackend(backend, group, fingerprints[0])
    try:
        result = evaluate_one(sharded or backend, output_dir, **kwargs)
    except BaseException as exc:
        try:
            if sharded is not None:
                sharded.fail(f"{type(exc).__name__}: {exc}")
        except Exception:  # the group itself broke (a rank died): the original error says more
            log.debug("could not tell the other ranks", exc_info=True)
        raise
    if source is not None:
        result["model"]["source"] = source
    if sharded is not None:
        per_rank = sharded.stop()
        result["distributed"] = {"processes": group.world, "encoded_per_rank": per_rank}
        log.info("evaluation over %d processes: texts encoded per rank %s", group.world, per_rank)
    write_json_atomic(Path(output_dir) / EVAL_RUN_FILE, result)
    return result
