"""Model cards: the generated ``README.md`` (hub front matter, design, recipe, evaluation, usage)
of every saved or exported model directory, rendered from ``poolattn.json`` and the card facts in
``model_card.json``. Loading a model reads neither, so an edited card changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .config import ConfigError, ModelConfig, to_dict
from .eval_results import read_eval_run
from .io import read_json_object, write_json_atomic, write_text_atomic
from .model_dir import read_design_file

CARD_FILE = "README.md"
CARD_DATA_FILE = "model_card.json"
CARD_DATA_VERSION = 1
TEMPLATE = Path(__file__).with_name("templates") / "model_card.md"

# Licences of hub families, by id prefix (lower case).
KNOWN_LICENSES: dict[str, str] = {
    "huggingfacetb/smollm": "apache-2.0",
    "google/gemma": "gemma",
    "qwen/qwen2": "apache-2.0",
    "mistralai/mistral-7b": "apache-2.0",
}

POOLING_TEXT = {
    "eos": "EOS-last token: the last-layer state of the appended EOS token",
    "mean": "mean of the last-layer token states (padding masked)",
    "weighted_mean": "position-weighted mean of the last-layer token states (SGPT weights)",
    "latent": "last-layer trainable: learned latents cross-attend over the last layer's token states, "
    "then an MLP, mean over latents",
    "multilayer": "multi-layers trainable: one vector per layer plus a learned layer-position embedding; "
    "learned latents cross-attend over the layer vectors, then an MLP, mean over latents",
    "nv_latent": "NV-Embed-style latent attention (trainable)",
}


class CardError(ValueError):
    """A model directory or a results record cannot be turned into a card; the message says why."""


def base_info(base: str) -> tuple[str | None, str | None]:
    """``(hub id, licence)`` of a design's base when known (a built-in alias: from its entry in
    ``poolattn.backbone.ALIASES``); a local path has neither."""
    from .backbone import ALIASES

    if base in ALIASES:
        return ALIASES[base].hub_id, ALIASES[base].license
    looks_like_hub_id = (
        base.count("/") == 1 and not base.startswith((".", "/", "~")) and not Path(base).exists()
    )
    if not looks_like_hub_id:
        return None, None
    lowered = base.lower()
    licence = next((lic for prefix, lic in KNOWN_LICENSES.items() if lowered.startswith(prefix)), None)
    return base, licence


def evaluation_summary(results: Mapping[str, Any] | str | Path) -> dict[str, Any]:
    """The card's record of an evaluation: a ``run.json`` (its content or its path, or the
    results directory holding it) reduced to per-task scores and per-family means."""
    if not isinstance(results, Mapping):
        try:
            results = read_eval_run(results)
        except (OSError, ValueError) as exc:
            raise CardError(f"cannot read evaluation results: {exc}") from exc
    try:
        tasks = {
            name: {
                "family": info["family"],
                "metric": info["main_score_name"],
                "score": float(info["main_score"]),
                "sampling": info.get("sampling"),
            }
            for name, info in results["tasks"].items()
        }
    except (KeyError, TypeError, ValueError) as exc:
        raise CardError(f"evaluation results: not a poolattn run.json record (missing {exc})") from exc
    families: dict[str, list[float]] = {}
    for info in tasks.values():
        families.setdefault(info["family"], []).append(info["score"])
    settings = results.get("settings", {})
    return {
        "fingerprint": results.get("model", {}).get("fingerprint"),
        "max_items": settings.get("max_items"),
        "mteb_version": settings.get("mteb_version"),
        "tasks": tasks,
        "families": {f: {"datasets": len(s), "mean": sum(s) / len(s)} for f, s in sorted(families.items())},
    }


def read_card_data(directory: str | Path) -> dict[str, Any]:
    """The stored card facts of a model directory (empty when it has none)."""
    path = Path(directory) / CARD_DATA_FILE
    try:
        return read_json_object(path, "card data") if path.exists() else {}
    except ValueError as exc:
        raise CardError(f"corrupt card data: {exc}") from exc


def _read_design(directory: Path) -> dict[str, Any]:
    """The design as saved (``model_dir.read_design_file``), its errors as the card's."""
    try:
        return read_design_file(directory)
    except (FileNotFoundError, ConfigError) as exc:
        raise CardError(str(exc)) from exc


def write_model_card(
    directory: str | Path,
    *,
    name: str | None = None,
    path: str | None = None,
    parameters: Mapping[str, Any] | None = None,
    training: Mapping[str, Any] | None = None,
) -> Path:
    """Store the card facts of a freshly saved model directory and render its ``README.md``;
    ``name``/``path``: its final name and location (``directory`` may be a temporary folder)."""
    directory = Path(directory)
    data: dict[str, Any] = {"card_data_version": CARD_DATA_VERSION, "name": name or directory.name}
    if path is not None:
        data["path"] = path
    return _store_card(directory, data, parameters=parameters, training=training)


def update_model_card(
    model_dir: str | Path,
    *,
    results: Mapping[str, Any] | str | Path | None = None,
) -> Path:
    """Add evaluation ``results`` (a ``run.json`` record, its path or its directory) to a saved
    model's card and re-render ``README.md``; returns its path. Reads no weights."""
    directory = Path(model_dir)
    _read_design(directory)
    data = read_card_data(directory) or {"card_data_version": CARD_DATA_VERSION, "name": directory.name}
    evaluation = evaluation_summary(results) if results is not None else None
    return _store_card(directory, data, evaluation=evaluation)


def _store_card(directory: Path, data: dict[str, Any], **sections: Mapping[str, Any] | None) -> Path:
    """Set the given card ``sections`` (``None`` leaves one as it is), write the card data and
    render ``README.md``."""
    data.update({key: dict(value) for key, value in sections.items() if value is not None})
    write_json_atomic(directory / CARD_DATA_FILE, data)
    name = str(data.get("name") or directory.name)
    text = render_model_card(_read_design(directory), data, name=name, path=str(data.get("path") or name))
    write_text_atomic(directory / CARD_FILE, text)
    return directory / CARD_FILE


def write_export_card(
    export_dir: str | Path,
    model: Any,
    *,
    kind: str,
    name: str,
    path: str,
    source_dir: str | Path | None = None,
    dtype: str | None = None,
    query_prompt: str = "",
) -> Path:
    """The ``README.md`` of an export (``kind``: ``plain``, ``module`` or ``onnx``) of ``model``,
    carrying the recipe and evaluation of the exported directory (``source_dir``)."""
    export_dir = Path(export_dir)
    source = read_card_data(source_dir) if source_dir is not None else {}
    data: dict[str, Any] = {"name": name, "path": path, "parameters": model.describe()}
    data.update({key: source[key] for key in ("training", "evaluation") if key in source})
    design = {
        "model": to_dict(model.config),
        "has_adapter": model.has_adapter and kind == "module",
        "full_finetune": model.full_finetune,
    }
    module_dir = next(
        (p.name for p in export_dir.iterdir() if p.is_dir() and p.name.endswith("PoolattnModule")), None
    )
    if module_dir:  # the inner poolattn directory keeps its own card, with its final location
        inner = {**read_card_data(export_dir / module_dir), **data, "name": module_dir}
        _store_card(export_dir / module_dir, {**inner, "path": f"{path}/{module_dir}"})
    export = {
        "kind": kind,
        "dtype": dtype or data["parameters"].get("compute_dtype"),
        "module_dir": module_dir,
        "query_prompt": query_prompt,
    }
    text = render_model_card(design, data, name=name, path=path, export=export)
    write_text_atomic(export_dir / CARD_FILE, text)
    return export_dir / CARD_FILE


def render_model_card(
    design: Mapping[str, Any],
    data: Mapping[str, Any],
    *,
    name: str,
    path: str,
    export: Mapping[str, Any] | None = None,
) -> str:
    """The whole ``README.md`` from ``templates/model_card.md`` via ``ModelCard.from_template``.

    Its front matter (``ModelCardData``) is what ``ModelCard.load`` reads back; a local base has
    no ``base_model``, is named in ``poolattn_base``, and its licence is ``other`` (unknown)."""
    from huggingface_hub import ModelCard, ModelCardData

    from ._version import __version__
    from .stats.report import sampling_text

    model = design["model"]
    hub_id, licence = base_info(str(model["base"]))
    kind = (export or {}).get("kind")
    tags = [
        "poolattn",
        "sentence-transformers" if kind in ("plain", "module") else None,
        "onnx" if kind == "onnx" else None,
        "sentence-similarity",
        "feature-extraction",
        "text-embeddings",
        f"pooling-{model['pooling']}".replace("_", "-"),
        f"attention-{model['attention']}",
        f"design-{model['pooling']}-{model['attention']}".replace("_", "-"),
        "lora" if design.get("has_adapter") else None,
    ]
    card_data = ModelCardData(
        library_name="sentence-transformers" if kind in ("plain", "module") else kind or "poolattn",
        base_model=hub_id,
        license=licence or "other",
        license_name=None if licence else "see-base-model",
        pipeline_tag="sentence-similarity",
        tags=[t for t in tags if t],
        poolattn_base=str(model["base"]),
        pooling=str(model["pooling"]),
        attention=str(model["attention"]),
    )
    evaluation = data.get("evaluation")
    rows = sorted((evaluation or {}).get("tasks", {}).items(), key=lambda kv: (kv[1]["family"], kv[0]))
    card = ModelCard.from_template(
        card_data,
        template_path=str(TEMPLATE),
        name=name,
        path=path,
        model=model,
        hub_id=hub_id,
        licence=licence,
        export=export,
        design_rows=_design_rows(design, data.get("parameters") or {}, export),
        training=data.get("training"),
        training_rows=_training_rows(data["training"]) if data.get("training") else [],
        evaluation=evaluation,
        evaluation_rows=[
            {**info, "task": task, "sampling": sampling_text(info.get("sampling"))} for task, info in rows
        ],
        version=__version__,
    )
    return str(card).rstrip("\n") + "\n"


PARAMETER_ROWS = (
    ("head_parameters", "head parameters"),
    ("adapter_parameters", "LoRA adapter parameters"),
    ("backbone_parameters", "backbone parameters"),
    ("embedding_dim", "embedding dimension"),
    ("layers", "layers"),
)


def _design_rows(
    design: Mapping[str, Any], params: Mapping[str, Any], export: Mapping[str, Any] | None
) -> list[tuple[str, str]]:
    model = ModelConfig.upgrade(design["model"], "model")  # a design saved in the old form too
    pooling = str(model["pooling"])
    rows = [
        ("base", f"`{model['base']}`"),
        ("attention", str(model["attention"])),
        ("pooling", f"`{pooling}`: {POOLING_TEXT.get(pooling, 'a registered poolattn pooler')}"),
    ]
    if settings := (model.get("poolers") or {}).get(pooling):  # the pooler's own settings, as saved
        rows.append(("pooler settings", ", ".join(f"`{k} = {v!r}`" for k, v in settings.items())))
    head_params = params.get("head_parameters")
    if head_params is not None:
        trainable = int(head_params) > 0
    else:  # no parameter counts: the pooler class says (``Pooler.trainable``)
        from .pooling import POOLERS

        trainable = pooling in POOLERS and POOLERS[pooling].trainable
    if trainable:
        rows.append(("head", _head_text(model.get("head") or {}, str(model.get("head_preset", "small")))))
    for key, label in PARAMETER_ROWS:
        value = params.get(key)
        if value is not None and (value or key != "adapter_parameters"):  # no LoRA: no adapter row
            rows.append((label, f"{int(value):,}" if key.endswith("_parameters") else str(value)))
    if export and export.get("kind") in ("plain", "onnx"):
        weights = f"LoRA merged into the backbone, stored in {export.get('dtype')}"
    elif design.get("full_finetune"):
        weights = "full fine-tuned backbone (`backbone/`)"
    elif design.get("has_adapter"):
        weights = "LoRA adapter (`adapter/`, PEFT) on the base"
    else:
        weights = "the base's own weights"
    template = str(model.get("query_template", "")).replace("\n", "\\n")
    dtype = str(model.get("dtype", "float32"))
    if params.get("compute_dtype") and params["compute_dtype"] != model.get("dtype"):
        dtype += f" (computed in {params['compute_dtype']} when saved)"
    rows += [
        ("weights", weights + (" + pooling head" if trainable else "")),
        ("max length", f"{model['max_length']} tokens (EOS appended: {model.get('append_eos', True)})"),
        ("query prompt", f"`{template}`; documents are embedded bare"),
        ("instruction tokens pooled", "no" if model.get("exclude_instruction") else "yes"),
        ("dtype", dtype),
        ("output", "float32, L2-normalised; compare with cosine similarity / dot product"),
    ]
    return rows


def _head_text(head: Mapping[str, Any], preset: str) -> str:
    """``16 latents, 8 heads x 64 dims, ff_mult 4 (preset small)`` from the head settings."""
    parts = []
    if {"num_latents", "num_heads", "head_dim"} <= set(head):
        parts.append(f"{head['num_latents']} latents, {head['num_heads']} heads x {head['head_dim']} dims")
    parts += [f"{k} {v}" for k, v in head.items() if k not in ("num_latents", "num_heads", "head_dim")]
    return ", ".join(parts) + f" (preset `{preset}`)"


def _training_rows(training: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The recipe's settings as card rows (the schema itself: ``poolattn.training.recipe``)."""
    from .training.recipe import adapter_text

    def lr(x: Any) -> str:
        return f"{float(x):g}" if x is not None else "–"

    t = training
    gradcache = "on" if t.get("gradcache") else "off"
    loss = f"InfoNCE, in-batch + hard negatives, temperature {t.get('temperature')}"
    rates = f"{lr(t.get('learning_rate'))} / {lr(t.get('head_learning_rate'))}"
    return [
        ("examples", str(t.get("examples"))),
        ("steps", str(t.get("steps"))),
        ("batch size (queries per step)", str(t.get("batch_size"))),
        ("hard negatives per query", str(t.get("num_negatives"))),
        ("forward mini-batch", f"{t.get('mini_batch_size')} texts (GradCache: {gradcache})"),
        ("loss", loss + (" (symmetric)" if t.get("symmetric_loss") else "")),
        ("learning rate (backbone / head)", rates),
        ("warm-up steps", str(t.get("warmup_steps"))),
        ("weight decay", str(t.get("weight_decay"))),
        ("adapter", adapter_text(t)),
        ("seed", str(t.get("seed"))),
        ("dtype / mixed precision", f"{t.get('dtype')} / {t.get('mixed_precision')}"),
        ("processes", str(t.get("processes", 1))),
    ]
