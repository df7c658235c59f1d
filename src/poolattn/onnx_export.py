"""ONNX export of a whole poolattn pipeline (merged backbone, attention mode, pooler, L2 norm)
with dynamic batch and length, so any design runs with onnxruntime alone: ``model.onnx``, the
tokenizer (EOS appended, right padding) and ``poolattn_onnx.json``. A design that excludes the
instruction from pooling takes a third input, ``pooling_mask`` (the prompt's tokens zeroed).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch

from .io import atomic_directory, read_json_object, write_json_atomic
from .model import EmbeddingModel

ONNX_FILE = "model.onnx"
ONNX_CONFIG_FILE = "poolattn_onnx.json"
OUTPUT_NAME = "sentence_embedding"  # not "embedding": a graph node of the backbone has that name
OPSET = 18


class _Pipeline(torch.nn.Module):
    """``(input_ids, attention_mask[, pooling_mask]) -> normalised embedding`` in one graph."""

    def __init__(self, model: EmbeddingModel) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, pooling_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        positions = (attention_mask.cumsum(dim=1) - 1).clamp(min=0)
        features = {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "position_ids": positions,
            "pooling_mask": attention_mask if pooling_mask is None else pooling_mask,
        }
        return torch.nn.functional.normalize(self.model(features).float(), dim=-1)


def export_onnx(
    model_or_dir: EmbeddingModel | str | Path,
    output_dir: str | Path,
    *,
    instruction: str | None = None,
    dtype: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Write ``model_or_dir`` as an ONNX pipeline folder; returns its path. ``dtype``: the backbone
    weights' (default float32: onnxruntime's CPU kernels are float32; few providers run bf16)."""
    from .export import eos_tokenizer, merged_backbone, prepare_export

    source = prepare_export(model_or_dir, Path(output_dir), instruction, overwrite)
    model = source.model
    torch_dtype = getattr(torch, dtype) if dtype else torch.float32
    exported = copy.deepcopy(model).eval()  # the LoRA merged, the backbone in dtype, the pooler float32
    exported.backbone = merged_backbone(exported, torch_dtype, owned=True)
    exported.compute_dtype = torch_dtype
    pipeline = _Pipeline(exported).eval()
    tokenizer = eos_tokenizer(model.tokenizer)
    sample = model.tokenize(["a first example text", "a second, longer example text to pad the first"])
    names = ["input_ids", "attention_mask"] + (["pooling_mask"] if model.config.exclude_instruction else [])
    batch, length = torch.export.Dim("batch"), torch.export.Dim("length")
    with atomic_directory(source.output_dir) as tmp:
        torch.onnx.export(
            pipeline,
            tuple(sample[n] for n in names),
            str(tmp / ONNX_FILE),
            input_names=names,
            output_names=[OUTPUT_NAME],
            dynamic_shapes={n: {0: batch, 1: length} for n in names},
            opset_version=OPSET,
            dynamo=True,
            external_data=True,
            verbose=False,
        )
        tokenizer.save_pretrained(tmp)
        write_json_atomic(
            tmp / ONNX_CONFIG_FILE,
            {
                "inputs": names,
                "output": OUTPUT_NAME,
                "max_length": model.config.max_length,
                "pad_token_id": tokenizer.pad_token_id,
                "pad_token": tokenizer.pad_token,
                "design": model.config.name,
                "prompts": source.prompts,
            },
        )
        source.write_card(tmp, "onnx", torch_dtype)
    return source.output_dir


class OnnxEncoder:
    """Embed texts with an ONNX export using only onnxruntime and tokenizers."""

    def __init__(self, directory: str | Path, threads: int | None = None) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        directory = Path(directory)
        self.config = read_json_object(directory / ONNX_CONFIG_FILE, "a poolattn ONNX config")
        self.tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
        self.tokenizer.enable_padding(pad_id=self.config["pad_token_id"], pad_token=self.config["pad_token"])
        self.tokenizer.enable_truncation(max_length=self.config["max_length"])
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(
            str(directory / ONNX_FILE), options, providers=["CPUExecutionProvider"]
        )

    def encode(self, texts: list[str], prompt_name: str | None = None, batch_size: int = 32) -> Any:
        """L2-normalised float32 vectors (a numpy array), texts behind prompt ``prompt_name``."""
        import numpy as np

        prompt = self.config["prompts"].get(prompt_name, "") if prompt_name else ""
        out = []
        for start in range(0, len(texts), batch_size):
            enc = self.tokenizer.encode_batch([prompt + t for t in texts[start : start + batch_size]])
            feeds = {
                "input_ids": np.array([e.ids for e in enc], dtype=np.int64),
                "attention_mask": np.array([e.attention_mask for e in enc], dtype=np.int64),
            }
            if "pooling_mask" in self.config["inputs"]:
                skip = len(self.tokenizer.encode(prompt).ids) - 1 if prompt else 0
                mask = feeds["attention_mask"].copy()
                mask[:, :skip] = 0
                feeds["pooling_mask"] = mask
            out.append(self.session.run([self.config["output"]], feeds)[0])
        return np.concatenate(out) if out else np.zeros((0, 0), dtype=np.float32)
