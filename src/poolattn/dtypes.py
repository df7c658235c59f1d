"""Which dtype the backbone computes in: ``auto`` picks bfloat16 where the hardware runs it fast.

bfloat16 is fast on CUDA GPUs that support it and on CPUs with AVX512-BF16 or AMX-BF16
(a bf16 matmul ~2.5x an fp32 one on such a CPU); on other CPUs it is emulated and slower
than float32, so ``auto`` keeps float32 there. Only the frozen backbone runs in the low
precision: trainable parameters (LoRA, heads), optimizer state, pooling and normalisation
stay float32, and embeddings are always returned as float32.
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
    """The CPU's native bf16 features (``avx512_bf16``, ``amx_bf16``) present on this machine.

    Asks torch's own CPU probe (cpuinfo, works on every OS) and falls back to the flags of
    ``/proc/cpuinfo``. Tests replace this function to simulate other machines.
    """
    capability = _torch_cpu_capability()
    found = {flag for flag in CPU_BF16_FLAGS if capability.get(flag)}
    if not found and CPUINFO.exists():
        flags = set()
        for line in CPUINFO.read_text(errors="replace").splitlines():
            if line.startswith("flags"):
                flags |= set(line.split(":", 1)[-1].split())
        found |= {flag for flag in CPU_BF16_FLAGS if flag in flags}
    return frozenset(found)


def _torch_cpu_capability() -> dict[str, object]:
    """torch's cpuinfo-based feature dict (a private API: empty when missing or failing)."""
    probe = getattr(getattr(torch._C, "_cpu", None), "_get_cpu_capability", None)
    if probe is None:
        return {}
    try:
        return dict(probe())
    except Exception:  # noqa: BLE001 - private API; the /proc/cpuinfo fallback decides then
        log.debug("torch CPU capability probe failed", exc_info=True)
        return {}


def cuda_bf16_supported() -> bool:
    """True when a CUDA device is present and runs bf16 natively (Ampere or newer)."""
    return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())


def resolve_dtype(setting: str, device: str | torch.device | None = None) -> DtypeChoice:
    """Turn ``model.dtype`` (``auto``, ``float32``, ``bfloat16``, ``float16``) into a choice.

    ``device`` is where the model will run; ``None`` means the GPU when one is present, else
    the CPU. Explicit names are honoured as given.
    """
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
    """Autocast to ``dtype`` on ``device``, or nothing for float32.

    Nothing rather than ``autocast(enabled=False)``: an outer autocast (accelerate's mixed
    precision) must stay in force when the model itself asks for float32.
    """
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def model_compute_dtype(setting: str, backbone: torch.nn.Module) -> torch.dtype:
    """The dtype an ``EmbeddingModel`` runs its backbone in.

    ``auto``: the dtype of the frozen weights, because ``load_backbone`` stored them in the
    dtype resolved for this hardware (a backbone built by the caller keeps the dtype it was
    given). An explicit name is that dtype (bf16 over float32 weights means autocast).
    """
    if setting == "auto":
        return floating_dtype(backbone)
    return DTYPE_BY_NAME[setting]
