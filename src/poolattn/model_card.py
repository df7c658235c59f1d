"""Model cards: the ``README.md`` every saved or exported model directory carries.

A card is generated, never hand-edited: YAML front matter (``library_name``, ``base_model``,
``pipeline_tag``, ``tags``, ``license``) for the Hugging Face ecosystem, then the design, the
training recipe and the evaluation results, and usage snippets. Its inputs live in two files
of the model directory: the design in ``poolattn.json`` and everything else (parameter
counts, training recipe, evaluation summary) in ``model_card.json``; ``update_model_card``
merges new facts into the latter and re-renders the card. Loading a model reads neither card
file, so a deleted or edited card changes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .eval_results import EVAL_RUN_FILE
from .io import write_json_atomic, write_text_atomic
from .model_dir import DESIGN_FILE

CARD_FILE = "README.md"
CARD_DATA_FILE = "model_card.json"
CARD_DATA_VERSION = 1

# Built-in aliases and the hub ids / licences of the weights they ship.
KNOWN_BASES: dict[str, tuple[str, str]] = {
    "smollm2-135m": ("HuggingFaceTB/SmolLM2-135M-Instruct", "apache-2.0"),
    "gemma3-270m": ("google/gemma-3-270m", "gemma"),
}
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
# the built-in poolers with weights: used only when a card has no parameter counts to tell
TRAINABLE_POOLERS = ("latent", "multilayer", "nv_latent")


class CardError(ValueError):
    """A model directory or a results record cannot be turned into a card; the message says why."""


def base_info(base: str) -> tuple[str | None, str | None]:
    """``(hub id, licence)`` of a design's base when known; a local path has neither."""
    if base in KNOWN_BASES:
        return KNOWN_BASES[base]
    looks_like_hub_id = (
        base.count("/") == 1 and not base.startswith((".", "/", "~")) and not Path(base).exists()
    )
    if not looks_like_hub_id:
        return None, None
    lowered = base.lower()
    licence = next((lic for prefix, lic in KNOWN_LICENSES.items() if lowered.startswith(prefix)), None)
    return base, licence


# --------------------------------------------------------------------------- card data
def training_recipe(config: Any, data: list[dict[str, Any]], processes: int = 1) -> dict[str, Any]:
    """The card's record of a training run from a ``TrainConfig`` and the loaded sources' summary."""
    t, d, lora = config.training, config.data, config.lora
    return {
        "data": [dict(item) for item in data],
        "examples": sum(int(item.get("examples", 0)) for item in data),
        "hub_datasets": list(d.hub),
        "num_negatives": d.num_negatives,
        "steps": t.steps,
        "batch_size": t.batch_size,
        "mini_batch_size": t.mini_batch_size,
        "gradcache": t.gradcache,
        "learning_rate": t.learning_rate,
        "head_learning_rate": t.head_learning_rate or t.learning_rate,
        "warmup_steps": t.warmup_steps,
        "weight_decay": t.weight_decay,
        "temperature": t.temperature,
        "symmetric_loss": t.symmetric,
        "seed": t.seed,
        "mixed_precision": t.mixed_precision,
        "dtype": config.model.dtype,
        "full_finetune": t.full_finetune,
        "lora": None
        if t.full_finetune
        else {
            "r": lora.r,
            "alpha": lora.alpha,
            "dropout": lora.dropout,
            "target_modules": list(lora.target_modules),
        },
        "processes": processes,
    }


def recipe_text(recipe: Mapping[str, Any]) -> str:
    """A ``training_recipe`` record's optimisation settings in one line; every place that
    describes a recipe in words (card, experiment plan and report) uses this one."""
    lr, head = recipe.get("learning_rate"), recipe.get("head_learning_rate")
    text = f"{recipe.get('steps')} steps, batch {recipe.get('batch_size')} queries"
    if recipe.get("gradcache"):
        text += f" (GradCache mini-batch {recipe.get('mini_batch_size')})"
    text += f", lr {lr}" + (f" (head {head})" if head is not None and head != lr else "")
    return text + f", warm-up {recipe.get('warmup_steps')}, temperature {recipe.get('temperature')}"


def adapter_text(recipe: Mapping[str, Any]) -> str:
    """What a ``training_recipe`` record trains: ``full fine-tuning`` or the LoRA settings."""
    lora = recipe.get("lora")
    if recipe.get("full_finetune") or not lora:
        return "full fine-tuning"
    targets = ", ".join(lora["target_modules"])
    return f"LoRA r {lora['r']}, alpha {lora['alpha']}, dropout {lora['dropout']} on {targets}"


def evaluation_summary(results: Mapping[str, Any] | str | Path) -> dict[str, Any]:
    """The card's record of an evaluation: a ``run.json`` (its content or its path, or the
    results directory holding it) reduced to per-task scores and per-family means."""
    if not isinstance(results, Mapping):
        path = Path(results)
        path = path / EVAL_RUN_FILE if path.is_dir() else path
        try:
            results = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise CardError(f"{path}: cannot read evaluation results ({exc})") from exc
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
    if not path.exists():
        return {}
    try:
        return dict(json.loads(path.read_text()))
    except (json.JSONDecodeError, TypeError, ValueError) as exc:
        raise CardError(f"{path}: corrupt card data ({exc})") from exc


def _read_design(directory: Path) -> dict[str, Any]:
    path = directory / DESIGN_FILE
    try:
        return dict(json.loads(path.read_text()))
    except FileNotFoundError as exc:
        raise CardError(f"{directory}: not a poolattn model directory (no {DESIGN_FILE})") from exc
    except json.JSONDecodeError as exc:
        raise CardError(f"{path}: corrupt design file ({exc})") from exc


# --------------------------------------------------------------------------- writing
def write_model_card(
    directory: str | Path,
    *,
    name: str | None = None,
    path: str | None = None,
    parameters: Mapping[str, Any] | None = None,
    training: Mapping[str, Any] | None = None,
    evaluation: Mapping[str, Any] | None = None,
) -> Path:
    """Store the card facts of a freshly saved model directory and render its ``README.md``.

    Called by ``EmbeddingModel.save`` (``parameters`` from ``describe()``) and by the trainer
    (``training`` from ``training_recipe``); the design is read from ``poolattn.json``. ``name``
    and ``path`` are the directory's final name and location, shown in the usage snippets
    (``directory`` may be a temporary folder that is renamed afterwards).
    """
    directory = Path(directory)
    data: dict[str, Any] = {"card_data_version": CARD_DATA_VERSION, "name": name or directory.name}
    if path is not None:
        data["path"] = path
    return _store_card(directory, data, parameters=parameters, training=training, evaluation=evaluation)


def update_model_card(
    model_dir: str | Path,
    *,
    results: Mapping[str, Any] | str | Path | None = None,
    training: Mapping[str, Any] | None = None,
) -> Path:
    """Add evaluation ``results`` (a ``run.json`` record, its path or its directory) and/or a
    ``training`` recipe to a saved model's card and re-render ``README.md``; returns its path.

    The experiment runner calls this after evaluating a trained model, so the model directory
    says how it scored (with the down-sampling used). Reads no weights.
    """
    directory = Path(model_dir)
    _read_design(directory)
    data = read_card_data(directory) or {"card_data_version": CARD_DATA_VERSION, "name": directory.name}
    evaluation = evaluation_summary(results) if results is not None else None
    return _store_card(directory, data, evaluation=evaluation, training=training)


def _store_card(directory: Path, data: dict[str, Any], **sections: Mapping[str, Any] | None) -> Path:
    """Set the given card ``sections`` (``None`` leaves one as it is), write the card data and
    render ``README.md``: the one way ``write_model_card`` and ``update_model_card`` save."""
    data.update({key: dict(value) for key, value in sections.items() if value is not None})
    write_json_atomic(directory / CARD_DATA_FILE, data)
    return _render_into(directory, data)


def write_export_card(
    export_dir: str | Path,
    module_dir: str,
    *,
    instruction: str,
    name: str | None = None,
    path: str | None = None,
    source_dir: str | Path | None = None,
) -> Path:
    """The ``README.md`` of a sentence-transformers export, from its poolattn module folder.

    The training recipe and evaluation of the exported model directory (``source_dir``) are
    carried into the module folder's card and the export's card.
    """
    export_dir = Path(export_dir)
    inner = export_dir / module_dir
    design = _read_design(inner)
    data = read_card_data(inner)
    source = read_card_data(source_dir) if source_dir is not None else {}
    name = name or export_dir.name
    path = path or str(export_dir)
    data.update({key: source[key] for key in ("training", "evaluation") if key in source})
    data.update(name=module_dir, path=f"{path}/{module_dir}")  # not the temporary folder it was saved in
    write_json_atomic(inner / CARD_DATA_FILE, data)
    _render_into(inner, data)
    text = render_model_card(
        design,
        data,
        name=name,
        path=path,
        export={"module_dir": module_dir, "instruction": instruction},
    )
    write_text_atomic(export_dir / CARD_FILE, text)
    return export_dir / CARD_FILE


def _render_into(directory: Path, data: Mapping[str, Any]) -> Path:
    design = _read_design(directory)
    name = str(data.get("name") or directory.name)
    path = str(data.get("path") or name)
    write_text_atomic(directory / CARD_FILE, render_model_card(design, data, name=name, path=path))
    return directory / CARD_FILE


# --------------------------------------------------------------------------- rendering
def front_matter(design: Mapping[str, Any], *, export: bool = False) -> dict[str, Any]:
    """The YAML front matter fields of a card."""
    model = design["model"]
    hub_id, licence = base_info(str(model["base"]))
    tags = [
        "poolattn",
        "sentence-transformers" if export else None,
        "sentence-similarity",
        "feature-extraction",
        "text-embeddings",
        f"pooling-{model['pooling']}".replace("_", "-"),
        f"attention-{model['attention']}",
        f"design-{model['pooling']}-{model['attention']}".replace("_", "-"),
        "lora" if design.get("has_adapter") else None,
    ]
    matter: dict[str, Any] = {"library_name": "sentence-transformers" if export else "poolattn"}
    if hub_id:
        matter["base_model"] = hub_id
    if licence:
        matter["license"] = licence
    matter["pipeline_tag"] = "sentence-similarity"
    matter["tags"] = [t for t in tags if t]
    return matter


def render_model_card(
    design: Mapping[str, Any],
    data: Mapping[str, Any],
    *,
    name: str,
    path: str,
    export: Mapping[str, str] | None = None,
) -> str:
    """The whole ``README.md``: front matter, design, training, evaluation, usage."""
    import yaml

    from ._version import __version__

    model = design["model"]
    matter = yaml.safe_dump(
        front_matter(design, export=export is not None), sort_keys=False, allow_unicode=True
    )
    hub_id, licence = base_info(str(model["base"]))
    base_text = f"`{model['base']}`" + (f" ({hub_id})" if hub_id and hub_id != model["base"] else "")
    kind = "sentence-transformers export of a " if export else ""
    parts = [
        f"---\n{matter}---",
        f"# {name}",
        f"A {kind}poolattn text-embedding model: the decoder LLM {base_text} with "
        f"**{model['attention']}** attention and **{model['pooling']}** pooling "
        f"(design `{model['pooling']}+{model['attention']}`)."
        + (f" The base model's licence is `{licence}`." if licence else ""),
        _design_section(design, data.get("parameters") or {}),
        _training_section(data.get("training")),
        _evaluation_section(data.get("evaluation")),
        _usage_section(model, path, export),
        f"---\n\n*Generated by poolattn {__version__} from `{DESIGN_FILE}` and `{CARD_DATA_FILE}`, "
        "regenerated on every save: do not edit by hand.*",
    ]
    return "\n\n".join(p for p in parts if p) + "\n"


def _table(rows: list[tuple[str, str]], header: tuple[str, str] = ("", "")) -> str:
    lines = [f"| {header[0]} | {header[1]} |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in rows]
    return "\n".join(lines)


def _design_section(design: Mapping[str, Any], params: Mapping[str, Any]) -> str:
    model = design["model"]
    pooling = str(model["pooling"])
    head = model.get("head") or {}
    rows = [
        ("base", f"`{model['base']}`"),
        ("attention", str(model["attention"])),
        ("pooling", f"`{pooling}`: {POOLING_TEXT.get(pooling, 'a registered poolattn pooler')}"),
    ]
    if pooling == "multilayer":
        vector = model.get("layer_vector", "auto")
        if vector == "auto":
            vector = "eos" if model["attention"] == "causal" else "mean"
        rows.append(
            ("per-layer vector", f"{vector} (`layer_vector = {model.get('layer_vector', 'auto')!r}`)")
        )
    trainable = (
        int(params["head_parameters"]) > 0
        if params.get("head_parameters") is not None
        else pooling in TRAINABLE_POOLERS
    )
    if trainable:
        rows.append(("head", _head_text(head, str(model.get("head_preset", "small")))))
    if params.get("head_parameters") is not None:
        rows.append(("head parameters", f"{int(params['head_parameters']):,}"))
    if params.get("adapter_parameters"):
        rows.append(("LoRA adapter parameters", f"{int(params['adapter_parameters']):,}"))
    if params.get("backbone_parameters") is not None:
        rows.append(("backbone parameters", f"{int(params['backbone_parameters']):,}"))
    if params.get("embedding_dim") is not None:
        rows.append(("embedding dimension", str(params["embedding_dim"])))
    if params.get("layers") is not None:
        rows.append(("layers", str(params["layers"])))
    weights = (
        "full fine-tuned backbone (`backbone/`)"
        if design.get("full_finetune")
        else "LoRA adapter (`adapter/`, PEFT) on the base"
        if design.get("has_adapter")
        else "the base's own weights"
    )
    template = str(model.get("query_template", "")).replace("\n", "\\n")
    rows += [
        (
            "weights",
            weights + (" + pooling head (`pooler.safetensors`)" if trainable else ""),
        ),
        ("max length", f"{model['max_length']} tokens (EOS appended: {model.get('append_eos', True)})"),
        ("query prompt", f"`{template}`; documents are embedded bare"),
        ("instruction tokens pooled", "no" if model.get("exclude_instruction") else "yes"),
        (
            "dtype",
            str(model.get("dtype", "float32"))
            + (
                f" (computed in {params['compute_dtype']} when saved)"
                if params.get("compute_dtype") and params.get("compute_dtype") != model.get("dtype")
                else ""
            ),
        ),
        ("output", "float32, L2-normalised; compare with cosine similarity / dot product"),
    ]
    return "## Design\n\n" + _table(rows, ("setting", "value"))


def _head_text(head: Mapping[str, Any], preset: str) -> str:
    """``16 latents, 8 heads x 64 dims, ff_mult 4 (preset small)`` from the head settings."""
    parts = []
    if {"num_latents", "num_heads", "head_dim"} <= set(head):
        parts.append(f"{head['num_latents']} latents, {head['num_heads']} heads x {head['head_dim']} dims")
    parts += [f"{k} {v}" for k, v in head.items() if k not in ("num_latents", "num_heads", "head_dim")]
    return ", ".join(parts) + f" (preset `{preset}`)"


def _fmt_lr(x: Any) -> str:
    return f"{float(x):g}" if x is not None else "–"


def _training_section(training: Mapping[str, Any] | None) -> str:
    if not training:
        return "## Training\n\nNo training is recorded for this directory (an untrained design, or saved outside `poolattn train`)."
    data = training.get("data") or []
    lines = ["## Training", "", "Data (one contrastive example: query, positive, hard negatives):", ""]
    lines += ["| source | file | examples | skipped | weight |", "|---|---|---:|---:|---:|"]
    for item in data:
        lines.append(
            f"| {item.get('name')} | `{item.get('location')}` | {item.get('examples')} | "
            f"{item.get('skipped', 0)} | {item.get('weight') if item.get('weight') is not None else '–'} |"
        )
    rows = [
        ("examples", str(training.get("examples"))),
        ("steps", str(training.get("steps"))),
        ("batch size (queries per step)", str(training.get("batch_size"))),
        ("hard negatives per query", str(training.get("num_negatives"))),
        (
            "forward mini-batch",
            f"{training.get('mini_batch_size')} texts (GradCache: {'on' if training.get('gradcache') else 'off'})",
        ),
        (
            "loss",
            f"InfoNCE, in-batch + hard negatives, temperature {training.get('temperature')}"
            + (" (symmetric)" if training.get("symmetric_loss") else ""),
        ),
        (
            "learning rate (backbone / head)",
            f"{_fmt_lr(training.get('learning_rate'))} / {_fmt_lr(training.get('head_learning_rate'))}",
        ),
        ("warm-up steps", str(training.get("warmup_steps"))),
        ("weight decay", str(training.get("weight_decay"))),
        ("adapter", adapter_text(training)),
        ("seed", str(training.get("seed"))),
        ("dtype / mixed precision", f"{training.get('dtype')} / {training.get('mixed_precision')}"),
        ("processes", str(training.get("processes", 1))),
    ]
    lines += ["", _table(rows, ("setting", "value"))]
    return "\n".join(lines)


def _evaluation_section(evaluation: Mapping[str, Any] | None) -> str:
    if not evaluation:
        return ""
    from .stats.report import sampling_text

    lines = [
        "## Evaluation",
        "",
        "Scores from `poolattn eval` with the real MTEB evaluators (main score x 100); "
        f"max items per dataset: {evaluation.get('max_items') or 'all'}"
        + (
            f"; model fingerprint `{str(evaluation['fingerprint'])[:12]}`"
            if evaluation.get("fingerprint")
            else ""
        )
        + (f"; mteb {evaluation['mteb_version']}" if evaluation.get("mteb_version") else "")
        + ".",
        "",
        "| family | datasets | mean score |",
        "|---|---:|---:|",
    ]
    for family, info in evaluation.get("families", {}).items():
        lines.append(f"| {family} | {info['datasets']} | {info['mean'] * 100:.2f} |")
    lines += ["", "| family | task | metric | score | data used |", "|---|---|---|---:|---|"]
    for task, info in sorted(evaluation.get("tasks", {}).items(), key=lambda kv: (kv[1]["family"], kv[0])):
        lines.append(
            f"| {info['family']} | {task} | {info['metric']} | {info['score'] * 100:.2f} | "
            f"{sampling_text(info.get('sampling'))} |"
        )
    return "\n".join(lines)


def _usage_section(model: Mapping[str, Any], path: str, export: Mapping[str, str] | None) -> str:
    st_snippet = (
        "```python\n"
        "from sentence_transformers import SentenceTransformer\n\n"
        f'model = SentenceTransformer("{path}", trust_remote_code=True)  # needs `pip install poolattn`\n'
        'docs = model.encode_document(["Photosynthesis converts light into chemical energy."])\n'
        'queries = model.encode_query(["how do plants make energy?"])  # the default instruction\n'
        'queries = model.encode_query(["how do plants make energy?"], '
        'instruction="Retrieve passages that answer the question")\n'
        "print(model.similarity(queries, docs))\n"
        "```"
    )
    if export is not None:
        return (
            "## Usage\n\n"
            + st_snippet
            + f'\n\nThe `"query"` prompt carries the instruction "{export["instruction"]}"; documents are bare. '
            f"`{export['module_dir']}/` is a regular poolattn model directory (its `base/` holds the base "
            "backbone when it was bundled; weights are safetensors only), so poolattn loads it too:\n\n"
            "```python\nfrom poolattn import EmbeddingModel\n\n"
            f'model = EmbeddingModel.load("{path}/{export["module_dir"]}")\n```'
        )
    return (
        "## Usage\n\n"
        "With poolattn:\n\n"
        "```python\n"
        "from poolattn import EmbeddingModel\n\n"
        f'model = EmbeddingModel.load("{path}")\n'
        'queries = model.encode(["how do plants make energy?"], prompt_type="query",\n'
        '                       instruction="Retrieve passages that answer the question")\n'
        'docs = model.encode(["Photosynthesis converts light into chemical energy."], prompt_type="document")\n'
        "print(queries @ docs.T)  # float32, L2-normalised\n"
        "```\n\n"
        "A file of texts from the command line (`.txt`, `.jsonl`, `.csv`; output `.npy`, `.jsonl`, `.parquet`):\n\n"
        f"```bash\npoolattn encode {path} --input texts.txt --output vectors.npy\n```\n\n"
        "With sentence-transformers, after an export:\n\n"
        f"```bash\npoolattn export {path} --output {path}-st\n```\n\n"
        + st_snippet.replace(f'"{path}"', f'"{path}-st"')
    )
