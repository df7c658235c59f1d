"""Build the Hugging Face cache the rehearsal of a paper config runs against (no network).

What a GPU user's first online run downloads, rebuilt here from files this machine has:

- ``Qwen/Qwen2-0.5B``: a randomly initialised ``Qwen2ForCausalLM`` with Qwen2-0.5B's published
  shape (24 layers, hidden 896, 14 heads, 2 KV heads, intermediate 4864, tied embeddings, bf16),
  or with ``--tiny`` the same architecture at ``QWEN2_TINY`` (4 layers, hidden 64, 4 heads,
  2 KV heads, intermediate 128; the test form), and the default model's tokenizer (SmolLM2,
  from poolattn's alias conversion cache; the vocab size follows it), laid out in
  ``$HF_HOME/hub`` as ``hf_hub_download`` leaves a download:
  ``models--Qwen--Qwen2-0.5B/{blobs/<sha256>, snapshots/<commit>/<file> -> blob, refs/main}``.
- ``yixuantt/ir_data``: the paper's training set schema (a ``train`` split with string columns
  ``query``, ``positive``, ``negative``, as the paper's ``model*_trainer.py`` read it), filled
  with local SNLI triples.
- one ``MTEB(eng, v1)`` task per family, filled from ``$POOLATTN_DATA_DIR/eval`` in the
  schema each task's loader reads, at the revision the task pins.

A dataset gets both layers a download leaves: its repository snapshot (README.md with the
``configs`` YAML and parquet files, at the pinned commit) in ``$HF_HOME/hub``, and the arrow
cache ``datasets`` prepares from it in ``$HF_HOME/datasets/<ns>___<name>/<config>/0.0.0/<commit>``,
made by datasets' own Parquet builder from the snapshot's files. Offline (``HF_HUB_OFFLINE=1``),
``datasets.load_dataset`` reads only that arrow cache, so every loader line after the fetch runs.

Usage: ``python bench/rehearsal/build_cache.py --out build/rehearsal/hf [--items 40] [--tiny]``
(the folder is built beside itself and renamed into place, so a stopped build leaves nothing;
its ``rehearsal.json`` records the model's shape, so a cache of the other shape is never reused).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

MODEL_ID = "Qwen/Qwen2-0.5B"
TRAIN_ID = "yixuantt/ir_data"
# Qwen2-0.5B's published config (huggingface.co/Qwen/Qwen2-0.5B/blob/main/config.json)
QWEN2_05B = dict(
    hidden_size=896,
    intermediate_size=4864,
    num_hidden_layers=24,
    num_attention_heads=14,
    num_key_value_heads=2,
    max_position_embeddings=131072,
    rope_theta=1000000.0,
    rms_norm_eps=1e-6,
    tie_word_embeddings=True,
    use_sliding_window=False,
    hidden_act="silu",
)
# the smaller form's shape: Qwen2's architecture (grouped-query attention, tied embeddings, bf16)
# at a size two slow CPU processes train and evaluate in seconds; the hub id stays the real one
QWEN2_TINY = dict(
    QWEN2_05B, hidden_size=64, intermediate_size=128, num_hidden_layers=4, num_attention_heads=4
)
# one task per MTEB(eng, v1) family; the slow test takes the first three
TASKS = [
    "STSBenchmark",
    "SciFact",
    "Banking77Classification",
    "TwentyNewsgroupsClustering",
    "SprintDuplicateQuestions",
    "AskUbuntuDupQuestions",
    "SummEval",
]
BUILD_VERSION = "1"  # bump when the layout changes: run.py rebuilds a cache of another version


def _commit(*parts: str) -> str:
    """A stable 40-hex commit id for a repository we make up (the model, the training set)."""
    return hashlib.sha1("\0".join(parts).encode()).hexdigest()


def place_in_hub(hub: Path, repo_type: str, repo_id: str, commit: str, files: dict[str, Path]) -> Path:
    """Lay files out as ``hf_hub_download`` does: content-addressed blobs, a snapshot of
    relative symlinks at ``commit``, and ``refs/main`` naming it. Returns the snapshot folder."""
    repo = hub / f"{repo_type}s--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / commit
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    for name, source in files.items():
        digest = hashlib.sha256(source.read_bytes()).hexdigest()
        blob = repo / "blobs" / digest
        if not blob.exists():
            shutil.copyfile(source, blob)
        link = snapshot / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    return snapshot


def build_model(hub: Path, work: Path, shape: dict[str, Any], seed: int = 0) -> Path:
    """A random Qwen2 model of ``shape`` with the default model's tokenizer, in the hub cache."""
    import torch
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    from poolattn.backbone import resolve_source

    tokenizer = AutoTokenizer.from_pretrained(resolve_source("smollm2-135m"))
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        **shape,
    )
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config).to(torch.bfloat16)
    out = work / "model"
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    files = {p.name: p for p in sorted(out.iterdir()) if p.is_file()}
    commit = _commit(MODEL_ID, json.dumps(shape, sort_keys=True), str(config.vocab_size), str(seed))
    return place_in_hub(hub, "model", MODEL_ID, commit, files)


def _readme(configs: dict[str, dict[str, str]]) -> str:
    """A dataset card whose YAML ``configs`` name each config's files, as hub datasets have."""
    lines = ["---", "configs:"]
    for name, splits in configs.items():
        lines += [f"- config_name: {name}", "  data_files:"]
        lines += [f"  - split: {split}\n    path: {path}" for split, path in splits.items()]
    return "\n".join(lines + ["---", "Rebuilt locally by bench/rehearsal/build_cache.py.", ""])


def build_dataset(
    home: Path, work: Path, repo_id: str, commit: str, tables: dict[str, dict[str, list[dict[str, Any]]]]
) -> None:
    """One dataset repository: hub snapshot (card + parquet) and datasets' prepared arrow cache.

    ``tables`` maps config name -> split -> rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from datasets.data_files import DataFilesDict
    from datasets.naming import camelcase_to_snakecase
    from datasets.packaged_modules.parquet.parquet import Parquet, ParquetConfig

    staging = work / repo_id.replace("/", "--")
    files: dict[str, Path] = {}
    layout: dict[str, dict[str, str]] = {}
    for config, splits in tables.items():
        for split, rows in splits.items():
            name = f"{config}/{split}-00000-of-00001.parquet"
            (staging / config).mkdir(parents=True, exist_ok=True)
            pq.write_table(pa.Table.from_pylist(rows), staging / name)
            files[name] = staging / name
            layout.setdefault(config, {})[split] = name
    (staging / "README.md").write_text(_readme(layout))
    files["README.md"] = staging / "README.md"
    snapshot = place_in_hub(home / "hub", "dataset", repo_id, commit, files)
    for config, splits in layout.items():
        data_files = DataFilesDict.from_patterns({s: [p] for s, p in splits.items()}, base_path=str(snapshot))

        class Snapshot(Parquet):  # the config as a hub card declares it: no suffix in its id
            BUILDER_CONFIGS = [ParquetConfig(name=config, data_files=data_files)]

        builder = Snapshot(
            cache_dir=str(home / "datasets"),
            dataset_name=camelcase_to_snakecase(repo_id.split("/")[-1]),
            config_name=config,
            hash=commit,
            base_path=str(snapshot),
        )
        # a hub load names the folder <namespace>___<name>; datasets refuses local data files
        # under a repo_id at construction, so the id is set once the builder exists
        builder.repo_id = repo_id
        builder._cache_dir = builder._build_cache_dir()
        builder.download_and_prepare()


def _jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _sts(data: Path, n: int) -> dict[str, Any]:
    rows = _jsonl(data / "sts/STSBenchmark/test.jsonl")[:n]
    return {"default": {"test": [{k: r[k] for k in ("sentence1", "sentence2", "score")} for r in rows]}}


def _retrieval(data: Path, n: int) -> dict[str, Any]:
    """SciFact as mteb/scifact stores it: configs corpus, queries and default (the qrels)."""
    root = data / "retrieval/SciFact"
    qrels = [line.rstrip("\n").split("\t") for line in (root / "qrels/test.tsv").read_text().splitlines()[1:]]
    by_query: dict[str, list[str]] = defaultdict(list)
    for qid, did, _ in qrels:
        by_query[qid].append(did)
    chosen = list(by_query)[: max(2, n // 4)]
    relevant = {d for q in chosen for d in by_query[q]}
    corpus_rows = _jsonl(root / "corpus.jsonl")
    corpus = [r for r in corpus_rows if r["_id"] in relevant]
    corpus += [r for r in corpus_rows if r["_id"] not in relevant][: max(0, n - len(corpus))]
    queries = [r for r in _jsonl(root / "queries.jsonl") if r["_id"] in set(chosen)]
    return {
        "corpus": {
            "corpus": [{"_id": r["_id"], "title": r.get("title", ""), "text": r["text"]} for r in corpus]
        },
        "queries": {"queries": [{"_id": r["_id"], "text": r["text"]} for r in queries]},
        "default": {
            "test": [{"query-id": q, "corpus-id": d, "score": 1} for q in chosen for d in by_query[q]]
        },
    }


def _classification(data: Path, n: int) -> dict[str, Any]:
    """Banking77 (train and test, text and label), the labels that fit ``n`` items."""
    root = data / "classification/Banking77"
    train, test = _jsonl(root / "train.jsonl"), _jsonl(root / "test.jsonl")
    labels = sorted({r["label"] for r in test})[: max(2, n // 12)]
    ids = {label: i for i, label in enumerate(labels)}

    def pick(rows: list[dict[str, Any]], per_label: int) -> list[dict[str, Any]]:
        seen: dict[str, int] = defaultdict(int)
        out = []
        for r in rows:
            if r["label"] in ids and seen[r["label"]] < per_label:
                seen[r["label"]] += 1
                out.append({"text": r["text"], "label": ids[r["label"]], "label_text": r["label"]})
        return out

    return {"default": {"train": pick(train, 8), "test": pick(test, 4)}}


def _clustering(data: Path, n: int) -> dict[str, Any]:
    """TwentyNewsgroups: one row per clustering set (sentences and labels lists), as on the hub."""
    sets = _jsonl(data / "clustering/TwentyNewsgroups/test.jsonl")[:2]
    return {"default": {"test": [{"sentences": s["sentences"][:n], "labels": s["labels"][:n]} for s in sets]}}


def _pair_classification(data: Path, n: int) -> dict[str, Any]:
    """SprintDuplicateQuestions' layout (one row of sent1/sent2/labels lists), Quora pairs inside."""
    rows = _jsonl(data / "pair_classification/QuoraDuplicates/test.jsonl")[:n]
    return {
        "default": {
            "test": [
                {
                    "sent1": [r["sentence1"] for r in rows],
                    "sent2": [r["sentence2"] for r in rows],
                    "labels": [int(r["label"]) for r in rows],
                }
            ]
        }
    }


def _reranking(data: Path, n: int) -> dict[str, Any]:
    """AskUbuntuDupQuestions' mteb 2 layout (corpus, queries, qrels, top_ranked), TRECQA inside."""
    rows = [r for r in _jsonl(data / "reranking/TRECQA/test.jsonl") if r["positive"] and r["negative"]]
    corpus, queries, qrels, top = [], [], [], []
    for qi, r in enumerate(rows[: max(2, n // 6)]):
        qid = f"q{qi}"
        queries.append({"_id": qid, "text": r["query"]})
        ids = []
        for kind, texts in (("p", r["positive"][:2]), ("n", r["negative"][:4])):
            for di, text in enumerate(texts):
                did = f"{qid}-{kind}{di}"
                corpus.append({"_id": did, "title": "", "text": text})
                ids.append(did)
                if kind == "p":
                    qrels.append({"query-id": qid, "corpus-id": did, "score": 1})
        top.append({"query-id": qid, "corpus-ids": ids})
    return {
        "corpus": {"test": corpus},
        "queries": {"test": queries},
        "default": {"test": qrels},
        "top_ranked": {"test": top},
    }


def _summarization(data: Path, n: int) -> dict[str, Any]:
    """SummEval's columns (text, human/machine summaries, relevance), STS pairs standing in."""
    rows = _jsonl(data / "sts/STSBenchmark/test.jsonl")[: max(8, n)]
    out = []
    for i in range(0, len(rows) - 3, 4):
        group = rows[i : i + 4]
        out.append(
            {
                "id": f"s{i}",
                "text": " ".join(r["sentence1"] for r in group),
                "human_summaries": [group[0]["sentence1"], group[1]["sentence1"]],
                "machine_summaries": [r["sentence2"] for r in group],
                "relevance": [float(r["score"]) for r in group],
            }
        )
    return {"default": {"test": out}}


BUILDERS: dict[str, Callable[[Path, int], dict[str, Any]]] = {
    "STSBenchmark": _sts,
    "SciFact": _retrieval,
    "Banking77Classification": _classification,
    "TwentyNewsgroupsClustering": _clustering,
    "SprintDuplicateQuestions": _pair_classification,
    "AskUbuntuDupQuestions": _reranking,
    "SummEval": _summarization,
}


def build_training_set(home: Path, work: Path, data: Path, n: int) -> None:
    """``yixuantt/ir_data`` in the paper's schema, filled with local SNLI triples."""
    rows = _jsonl(data / "train/snli_triples.jsonl")[:n]
    table = [{"query": r["query"], "positive": r["positive"], "negative": r["negative"]} for r in rows]
    build_dataset(home, work, TRAIN_ID, _commit(TRAIN_ID, str(n)), {"default": {"train": table}})


def build(
    out: Path, data: Path, tasks: list[str], items: int, train_items: int, shape: dict[str, Any] = QWEN2_05B
) -> dict[str, Any]:
    """The whole cache, built beside ``out`` and renamed into place; returns its manifest."""
    import mteb

    unknown = [t for t in tasks if t not in BUILDERS]
    if unknown:
        raise ValueError(f"--tasks: no builder for {unknown} (known: {', '.join(BUILDERS)})")
    out.parent.mkdir(parents=True, exist_ok=True)
    home = Path(tempfile.mkdtemp(prefix=out.name + ".", dir=out.parent))
    work = Path(tempfile.mkdtemp(prefix="staging.", dir=home))
    try:
        model_snapshot = build_model(home / "hub", work, shape)
        build_training_set(home, work, data, train_items)
        pinned = {}
        for name in tasks:
            meta = mteb.get_task(name).metadata
            repo, revision = meta.dataset["path"], meta.dataset["revision"]
            build_dataset(home, work, repo, revision, BUILDERS[name](data / "eval", items))
            pinned[name] = {"repo": repo, "revision": revision}
        shutil.rmtree(work)
        manifest = {
            "build_version": BUILD_VERSION,
            "model": {"id": MODEL_ID, "snapshot": model_snapshot.name, **shape},
            "train": TRAIN_ID,
            "tasks": pinned,
            "items": items,
            "train_items": train_items,
        }
        (home / "rehearsal.json").write_text(json.dumps(manifest, indent=2))
        if out.exists():
            shutil.rmtree(out)
        os.replace(home, out)
    except BaseException:
        shutil.rmtree(home, ignore_errors=True)
        raise
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="the HF_HOME folder to create")
    parser.add_argument(
        "--data", type=Path, default=os.environ.get("POOLATTN_DATA_DIR"), help="local data folder"
    )
    parser.add_argument(
        "--tasks", default=",".join(TASKS), help="comma-separated tasks (default: one per family)"
    )
    parser.add_argument("--items", type=int, default=40, help="about this many items per task")
    parser.add_argument("--train-items", type=int, default=256, help="rows of yixuantt/ir_data")
    parser.add_argument("--tiny", action="store_true", help="the model at QWEN2_TINY, not the real shape")
    args = parser.parse_args(argv)
    if args.data is None or not (Path(args.data) / "eval").is_dir():
        print(f"--data: {args.data} has no eval/ folder (set POOLATTN_DATA_DIR or --data)", file=sys.stderr)
        return 2
    os.environ["HF_HUB_OFFLINE"] = "1"  # the task registry only; nothing here may download
    tasks = [t for t in args.tasks.split(",") if t]
    shape = QWEN2_TINY if args.tiny else QWEN2_05B
    manifest = build(args.out, Path(args.data), tasks, args.items, args.train_items, shape)
    print(json.dumps(manifest["tasks"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
