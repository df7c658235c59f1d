"""Checkpoints: trainable weights, optimizer, scheduler, RNG states and data position, without
pickle (safetensors + JSON), renamed into place whole; each holds a loadable ``model/``."""

from __future__ import annotations

import base64
import json
import os
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file

from ..io import atomic_directory, load_safetensors

CHECKPOINT_DIR = "checkpoints"
_NAME = re.compile(r"^step-(\d{8})$")
# step, scheduler, RNG and data position; older checkpoints' ``state.json`` (now a grid run's) is still read
CHECKPOINT_STATE_FILE = "trainer_state.json"
_OLD_CHECKPOINT_STATE_FILE = "state.json"


def _state_file(checkpoint: Path) -> Path | None:
    """The checkpoint's state file under its current name or the old one; None if neither."""
    for name in (CHECKPOINT_STATE_FILE, _OLD_CHECKPOINT_STATE_FILE):
        if (checkpoint / name).is_file():
            return checkpoint / name
    return None


def checkpoint_name(step: int) -> str:
    return f"step-{step:08d}"


def list_checkpoints(output_dir: str | Path) -> list[Path]:
    """Complete checkpoints (oldest first); temporary directories are ignored."""
    root = Path(output_dir) / CHECKPOINT_DIR
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and _NAME.match(p.name) and _state_file(p)]
    return sorted(found, key=lambda p: int(_NAME.match(p.name).group(1)))


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    found = list_checkpoints(output_dir)
    return found[-1] if found else None


def prune_checkpoints(output_dir: str | Path, keep: int) -> None:
    for old in list_checkpoints(output_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def rng_state() -> dict[str, Any]:
    """This process's RNG states as JSON-friendly data."""
    state: dict[str, Any] = {
        "torch": base64.b64encode(torch.get_rng_state().numpy().tobytes()).decode(),
        "numpy": _jsonable(np.random.get_state()),
        "python": _jsonable(random.getstate()),
    }
    if torch.cuda.is_available():
        state["cuda"] = [
            base64.b64encode(s.numpy().tobytes()).decode() for s in torch.cuda.get_rng_state_all()
        ]
    return state


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return {"__ndarray__": value.tolist(), "dtype": str(value.dtype)}
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    return value


def _from_json(value: Any) -> Any:
    if isinstance(value, dict) and "__ndarray__" in value:
        return np.array(value["__ndarray__"], dtype=value["dtype"])
    if isinstance(value, list):
        return tuple(_from_json(v) for v in value)
    return value


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(torch.frombuffer(bytearray(base64.b64decode(state["torch"])), dtype=torch.uint8))
    np.random.set_state(_from_json(state["numpy"]))
    version, internal, gauss = _from_json(state["python"])
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(
            [torch.frombuffer(bytearray(base64.b64decode(s)), dtype=torch.uint8) for s in state["cuda"]]
        )


OPTIMIZER = "optimizer"
HEAD_WARMUP_OPTIMIZER = "head_warmup_optimizer"  # the head warm-up's own AdamW, while it runs


def optimizer_to_files(state: dict[str, Any], directory: Path, stem: str = OPTIMIZER) -> None:
    """Split an optimizer state dict into tensors (safetensors) and the rest (JSON)."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, values in state["state"].items():
        for key, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{index}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(index), {})[key] = value
    save_file(tensors, str(directory / f"{stem}.safetensors"))
    meta = {"param_groups": state["param_groups"], "scalars": scalars}
    (directory / f"{stem}.json").write_text(json.dumps(meta, indent=1))


def optimizer_from_files(directory: Path, stem: str = OPTIMIZER) -> dict[str, Any]:
    meta = json.loads((directory / f"{stem}.json").read_text())
    per_param: dict[int, dict[str, Any]] = {}
    for name, tensor in load_safetensors(directory / f"{stem}.safetensors").items():
        index, key = name.split(".", 1)
        per_param.setdefault(int(index), {})[key] = tensor
    for index, values in meta["scalars"].items():
        per_param.setdefault(int(index), {}).update(values)
    groups = [{**g, "betas": tuple(g["betas"])} if "betas" in g else g for g in meta["param_groups"]]
    return {"state": per_param, "param_groups": groups}


def write_checkpoint(
    output_dir: str | Path,
    step: int,
    *,
    model: Any,
    trainable: dict[str, torch.Tensor],
    optimizer_state: dict[str, Any] | None,
    scheduler_state: dict[str, Any],
    rng_states: list[dict[str, Any]],
    data_state: dict[str, Any],
    extra: dict[str, Any] | None = None,
    extra_dirs: dict[str, Path] | None = None,
    head_warmup_optimizer_state: dict[str, Any] | None = None,
) -> Path:
    """Write checkpoint ``step`` atomically (temp dir, then rename) and return its path
    (``head_warmup_optimizer_state``: a checkpoint taken during the head warm-up)."""
    root = Path(output_dir) / CHECKPOINT_DIR
    root.mkdir(parents=True, exist_ok=True)
    final = root / checkpoint_name(step)
    with atomic_directory(final) as tmp:
        model.save(tmp / "model")
        weights = {k: v.detach().cpu().contiguous() for k, v in trainable.items()}
        save_file(weights, str(tmp / "trainable.safetensors"))
        if optimizer_state is not None:
            optimizer_to_files(optimizer_state, tmp)
        if head_warmup_optimizer_state is not None:
            optimizer_to_files(head_warmup_optimizer_state, tmp, HEAD_WARMUP_OPTIMIZER)
        for name, directory in (extra_dirs or {}).items():  # e.g. DeepSpeed/FSDP sharded state
            os.replace(directory, tmp / name)
        state = dict(step=step, scheduler=scheduler_state, rng=rng_states, data=data_state)
        (tmp / CHECKPOINT_STATE_FILE).write_text(json.dumps({**state, **(extra or {})}))
    return final


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Everything a resume needs: the checkpoint's state plus trainable weights and optimizer
    states (the head warm-up's under ``head_warmup_optimizer``, None outside the warm-up)."""
    path = Path(path)
    state_file = _state_file(path)
    if state_file is None:
        raise FileNotFoundError(f"{path}: not a checkpoint (no {CHECKPOINT_STATE_FILE})")
    state = json.loads(state_file.read_text())
    state["trainable"] = load_safetensors(path / "trainable.safetensors")
    for stem in (OPTIMIZER, HEAD_WARMUP_OPTIMIZER):
        state[stem] = optimizer_from_files(path, stem) if (path / f"{stem}.json").exists() else None
    return state
