"""Which dtype the backbone computes in: ``auto`` picks bfloat16 where the hardware runs it fast.

That is CUDA GPUs with bf16, and CPUs with AVX512-BF16 or AMX-BF16 whose bf16 matmul measures at
least ``BF16_MIN_SPEEDUP`` times their float32 one. The flags alone do not say it: an AMX CPU runs
bf16 ~5x faster than float32, but a 2-core Xeon VM with AVX512-BF16 and no AMX measured bf16 at
0.53x float32 (this probe) and trained 1.37x slower in bf16 (BENCHMARKS.md, "Evidence per minute"). The probe
runs once per machine, torch version and thread count and is kept in the cache folder, so every
run and every process on a machine decides alike. Without the flags bf16 is emulated, so float32
without a probe. Only the frozen backbone runs in low precision: trainable parameters, optimizer
state, pooling and the returned embeddings stay float32.
"""

from __future__ import annotations

import contextlib
import logging
import platform
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch

from .io import read_json_object, write_json_atomic
from .settings import cache_dir

log = logging.getLogger(__name__)

DTYPE_BY_NAME = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # names in /proc/cpuinfo and in torch's capability dict
CPUINFO = Path("/proc/cpuinfo")
BF16_MIN_SPEEDUP = 1.25  # bf16 over float32 matmul a CPU must measure for ``auto`` to take bf16
PROBE_FILE = "cpu_matmul_probe.json"  # in the cache folder: {machine key: {dtype: GFLOP/s}}
PROBE_SIZE = 1024  # square matmul of the probe: ~10 ms per product on a 2-core CPU
PROBE_REPEATS = 6


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


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``, else ``platform.processor()``)."""
    if CPUINFO.exists():
        for line in CPUINFO.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[-1].strip()
    return platform.processor() or platform.machine()


def measure_matmul_rates(size: int = PROBE_SIZE, repeats: int = PROBE_REPEATS) -> dict[str, float]:
    """Best GFLOP/s of a ``size``^3 matmul in float32 and bf16, the two interleaved so that load
    from elsewhere weighs on both alike."""
    pairs = {
        d: (torch.randn(size, size, dtype=d), torch.randn(size, size, dtype=d))
        for d in (torch.float32, torch.bfloat16)
    }
    best = dict.fromkeys(pairs, float("inf"))
    for _ in range(repeats + 1):  # the first round warms the kernels up and is kept only if best
        for dtype, (a, b) in pairs.items():
            start = time.perf_counter()
            torch.matmul(a, b)
            best[dtype] = min(best[dtype], time.perf_counter() - start)
    return {str(d).removeprefix("torch."): round(2 * size**3 / t / 1e9, 1) for d, t in best.items()}


@lru_cache(maxsize=1)
def cpu_matmul_rates() -> dict[str, float]:
    """This machine's float32 and bf16 matmul GFLOP/s: read from the cache folder's probe file
    when this machine (CPU, bf16 flags, torch version, threads) was measured, else measured and
    recorded there under a file lock, so concurrent processes (ranks) share one measurement. An
    unwritable cache folder costs only the sharing: the probe is then measured here, with a warning."""
    from filelock import FileLock

    flags = ",".join(sorted(cpu_bf16_features()))
    key = f"{cpu_name()} [{flags}] torch {torch.__version__} threads {torch.get_num_threads()}"
    path = cache_dir() / PROBE_FILE
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(f"{path}.lock"):
            known = _recorded_probes(path)
            rates = known.get(key)
            if not _valid_rates(rates):
                rates = measure_matmul_rates()
                write_json_atomic(path, {**known, key: rates})
                log.info("CPU matmul probe (%s): %s GFLOP/s, recorded in %s", key, rates, path)
    except OSError as exc:
        rates = measure_matmul_rates()
        log.warning("cannot record the CPU matmul probe in %s (%s); measured in this process only", path, exc)
    return {"float32": float(rates["float32"]), "bfloat16": float(rates["bfloat16"])}


def _recorded_probes(path: Path) -> dict:
    """The probe file's records; a corrupt file is measured again (it is only a cache)."""
    if not path.exists():
        return {}
    try:
        return read_json_object(path, "a CPU matmul probe")
    except ValueError as exc:
        log.warning("%s; measuring again", exc)
        return {}


def _valid_rates(rates: object) -> bool:
    return isinstance(rates, dict) and all(
        isinstance(rates.get(d), int | float) and rates[d] > 0 for d in ("float32", "bfloat16")
    )


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
        rates = cpu_matmul_rates()
        speedup = rates["bfloat16"] / rates["float32"]
        measured = (
            f"its bf16 matmul ran {speedup:.2f}x float32 "
            f"({rates['bfloat16']:.0f} vs {rates['float32']:.0f} GFLOP/s, probe in {cache_dir() / PROBE_FILE})"
        )
        has = f"auto: the CPU has {' and '.join(sorted(features))}"
        if speedup >= BF16_MIN_SPEEDUP:
            return DtypeChoice("bfloat16", f"{has} and {measured}")
        return DtypeChoice(
            "float32", f"{has}, but {measured}, under the {BF16_MIN_SPEEDUP}x that pays for bf16"
        )
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
