"""Which dtype the backbone computes in: ``auto`` picks bfloat16 where the hardware runs it fast.

That is CUDA GPUs with bf16 and CPUs with AVX512-BF16 or AMX-BF16; elsewhere bf16 is emulated
and slower, so ``auto`` keeps float32. Only the frozen backbone runs in low precision: trainable
parameters, optimizer state, pooling and the returned embeddings stay float32.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch

log = logging.getLogger(__name__)

DTYPE_BY_NAME = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # names in /proc/cpuinfo and in torch's capability dict
CPUINFO = Path("/proc/cpuinfo")


@dataclass(frozen=True)
class DtypeChoice:
    """The resolved compute dtype and, for the log and the reports, why it was chosen."""

    name: str
    reason: str

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPE_BY_NAME[self.name]


@lru_cache(maxsize=1)
def cpu_bf16_features() -> frozenset[str]:
    """The CPU's native bf16 features (``avx512_bf16``, ``amx_bf16``): torch's own probe (every
    OS), else the flags of ``/proc/cpuinfo``."""
    capability = _torch_cpu_capability()
    found = {flag for flag in CPU_BF16_FLAGS if capability.get(flag)}
    if not found and CPUINFO.exists():
        for line in CPUINFO.read_text(errors="replace").splitlines():
            if line.startswith("flags"):
                found |= {flag for flag in CPU_BF16_FLAGS if flag in line.split(":", 1)[-1].split()}
    return frozenset(found)


def _torch_cpu_capability() -> dict[str, object]:
    """torch's cpuinfo-based feature dict (a private API: empty when missing or failing)."""
    try:
        return dict(torch._C._cpu._get_cpu_capability())
    except Exception:  # a private API; the /proc/cpuinfo fallback decides then
        log.debug("torch CPU capability probe failed", exc_info=True)
        return {}


def cuda_bf16_supported() -> bool:
    """True when a CUDA device is present and runs bf16 natively (Ampere or newer)."""
    return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())


def resolve_dtype(setting: str, device: str | torch.device | None = None) -> DtypeChoice:
    """Turn ``model.dtype`` into a choice for ``device`` (None: the GPU when present, else the CPU);
    explicit names are honoured as given."""
    if setting in DTYPE_BY_NAME:
        return DtypeChoice(setting, "set explicitly (model.dtype)")
    if setting != "auto":
        raise ValueError(f"model.dtype: {setting!r} is not valid; choose auto, {', '.join(DTYPE_BY_NAME)}")
    kind = torch.device(device).type if device is not None else None
    if kind == "cuda" or (kind is None and torch.cuda.is_available()):
        if cuda_bf16_supported():
            return DtypeChoice("bfloat16", "auto: the CUDA device supports bf16")
        return DtypeChoice("float32", "auto: no CUDA device with bf16 support")
    if kind not in (None, "cpu"):
        return DtypeChoice("float32", f"auto: float32 on {kind} devices")
    features = cpu_bf16_features()
    if features:
        return DtypeChoice("bfloat16", f"auto: the CPU has {' and '.join(sorted(features))}")
    return DtypeChoice(
        "float32", "auto: the CPU has no AVX512-BF16/AMX-BF16 (bf16 would be emulated, slower)"
    )


def floating_dtype(module: torch.nn.Module) -> torch.dtype:
    """The dtype of a module's frozen floating-point weights (float32 when it has none)."""
    frozen = [p.dtype for p in module.parameters() if p.is_floating_point() and not p.requires_grad]
    weights = frozen or [p.dtype for p in module.parameters() if p.is_floating_point()]
    return weights[0] if weights else torch.float32


def compute_autocast(device: torch.device, dtype: torch.dtype) -> contextlib.AbstractContextManager:
    """Autocast to ``dtype`` on ``device``; for float32 nothing, not ``autocast(enabled=False)``,
    so an outer autocast (accelerate's mixed precision) stays in force."""
    return contextlib.nullcontext() if dtype == torch.float32 else torch.autocast(device.type, dtype=dtype)


def model_compute_dtype(setting: str, backbone: torch.nn.Module) -> torch.dtype:
    """The dtype an ``EmbeddingModel`` runs its backbone in: for ``auto`` that of the frozen weights
    (``load_backbone`` stored them in the dtype resolved for this hardware), else the named one."""
    return floating_dtype(backbone) if setting == "auto" else DTYPE_BY_NAME[setting]
