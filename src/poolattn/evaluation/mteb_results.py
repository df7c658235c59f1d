"""mteb's own results layout beside poolattn's (``<output>/mteb/results/<name>/<revision>/``:
``model_meta.json`` and the task files), which ``mteb.cache.ResultCache`` and the MTEB results
repository read. The revision is the model's fingerprint: a changed model never shares a folder.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from datetime import date
from pathlib import Path
from typing import Any

from ..config import ModelConfig
from ..io import write_json_atomic

MTEB_DIR = "mteb"


def model_meta(run: Mapping[str, Any], backend: Any) -> Any:
    """The ModelMeta of a run's model (``run``: the ``run.json`` record; ``backend``: its encoder backend)."""
    from mteb.models.model_meta import ModelMeta

    info = dict(run["model"])
    config = getattr(getattr(backend, "model", None), "config", None)
    if not isinstance(config, ModelConfig):  # e.g. a sentence-transformers model's BertConfig
        config = None
    parts = ("backbone", "adapter", "head")
    params = info.get("parameters") or sum(info.get(f"{part}_parameters") or 0 for part in parts)
    design = None  # the design goes into experiment_kwargs
    if config is not None:
        keys = ("pooling", "attention", "base", "query_template", "exclude_instruction")
        design = {key: getattr(config, key) for key in keys} | {"compute_dtype": info.get("compute_dtype")}
    training = None  # the training sources recorded in a model directory's card data
    if info.get("source") and Path(info["source"]).is_dir():
        from ..model_card import read_card_data

        data = (read_card_data(info["source"]).get("training") or {}).get("data") or []
        training = {str(item["name"]) for item in data if "name" in item} or None
    name = str(info.get("name") or "poolattn/model")
    if "/" not in name:
        name = f"poolattn/{name}"
    return ModelMeta(
        loader=None,
        name=name.replace("+", "-"),
        revision=str(info.get("fingerprint") or "no_revision")[:16],
        release_date=date.today().isoformat(),
        languages=["eng-Latn"],
        n_parameters=int(params) if params else None,
        memory_usage_mb=None,
        max_tokens=float(config.max_length) if config is not None else info.get("max_seq_length"),
        embed_dim=int(info["embedding_dim"]) if info.get("embedding_dim") else None,
        license=None,
        open_weights=True,
        public_training_code="https://github.com/poolattn/poolattn" if config is not None else None,
        public_training_data=None,
        framework=["PyTorch", "Sentence Transformers"] if config is None else ["PyTorch"],
        similarity_fn_name="cosine",
        use_instructions=bool(info.get("uses_instructions")),
        training_datasets=training,
        experiment_kwargs=design,
    )


def write_mteb_results(output: Path, run: Mapping[str, Any], backend: Any) -> Path:
    """Write (replacing any earlier) ``<output>/mteb`` from the task files of ``run``; returns the
    revision folder."""
    meta = model_meta(run, backend)
    root = output / MTEB_DIR
    shutil.rmtree(root, ignore_errors=True)  # a rerun must not leave an older revision behind
    folder = root / "results" / meta.model_name_as_path() / meta.revision
    if meta.experiment_name:
        folder = folder / "experiments" / meta.experiment_name
    folder.mkdir(parents=True, exist_ok=True)
    write_json_atomic(folder / "model_meta.json", meta.to_dict())
    for task, info in run.get("tasks", {}).items():
        source = output / str(info.get("file") or f"{task}.json")
        if source.exists():
            shutil.copyfile(source, folder / f"{task}.json")
    return folder
