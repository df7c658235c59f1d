"""Compare results directories: designs, per-dataset and per-family paired tests, verdicts.

Each results directory is a *run*; runs differing only by seed (``<design>-seed<N>``, or
``designs=``) are one *design*, scored by their mean. Holm runs within each family (the paper's
per-family claims) or globally. ``untrained-*`` and ``fixed`` designs have no seed term.
"""

from __future__ import annotations

import itertools
import json
import math
import re
import warnings
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..eval_results import EVAL_RUN_FILE, NoScoresError, task_main_score
from ..experiment.plan import UNTRAINED_PREFIX
from .bayes import bayesian_signed_rank
from .bootstrap import (
    N_RESAMPLES,
    DatasetReplicates,
    build_replicates,
    ci95,
    family_test,
    paired_dataset_test,
    rng_for,
)
from .family import SeedVariance, mde, pooled_seed_variance
from .items import DatasetItems, Entry, ItemsError, read_items, read_json
from .ranks import friedman, nemenyi
from .tests import holm_by, wilcoxon_paired
from .verdict import decide, metric_span, rope_for

HOLM_SCOPES = ("family", "global")
SEED_NAME = re.compile(r"^(?P<design>.+)-seed(?P<seed>\d+)$")


class ResultsError(ValueError):
    """A results directory or file is missing, empty or corrupt; the message names the file."""


@dataclass
class ModelResults:
    """One run's main scores by task, with the family, sampling and item file of each task."""

    name: str
    directory: str
    fingerprint: str | None
    design: str | None
    scores: dict[str, float] = field(default_factory=dict)
    families: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, str] = field(default_factory=dict)
    sampling: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    items: dict[str, str | None] = field(default_factory=dict)
    items_problems: dict[str, str] = field(default_factory=dict)


def load_results(directory: str | Path) -> ModelResults:
    """Read ``run.json`` and every task file it lists; scores come from the task files."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ResultsError(f"{directory}: not a results directory")
    run = read_json(directory / EVAL_RUN_FILE, ResultsError)
    try:
        model, tasks = run["model"], run["tasks"]
    except (KeyError, TypeError) as exc:
        raise ResultsError(f"{directory / EVAL_RUN_FILE}: corrupt run file (missing {exc})") from exc
    if not tasks:
        raise ResultsError(f"{directory / EVAL_RUN_FILE}: lists no tasks")
    result = ModelResults(
        name=str(model.get("design") or model.get("name") or directory.name),
        directory=str(directory),
        fingerprint=model.get("fingerprint"),
        design=model.get("design"),
        settings=run.get("settings", {}),
    )
    for task, info in tasks.items():
        path = directory / info["file"]
        data = read_json(path, ResultsError)
        try:
            result.scores[task] = task_main_score(data)
        except NoScoresError as exc:
            raise ResultsError(f"{path}: no scores") from exc
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ResultsError(f"{path}: not an mteb task result (no scores/main_score: {exc})") from exc
        result.families[task] = info["family"]
        result.metrics[task] = info.get("main_score_name", "")
        result.sampling[task] = info.get("sampling")
        result.items[task] = str(directory / info["items"]) if info.get("items") else None
        if info.get("items_problem"):
            result.items_problems[task] = info["items_problem"]
    return result


def design_groups(
    models: list[ModelResults], designs: Sequence[str] | None = None
) -> dict[str, list[ModelResults]]:
    """Runs grouped into designs: explicit labels, else names ``<design>-seed<N>`` share a design."""
    if designs is not None and len(designs) != len(models):
        raise ValueError(f"designs: got {len(designs)} labels for {len(models)} results directories")
    groups: dict[str, list[ModelResults]] = {}
    for i, m in enumerate(models):
        label = designs[i] if designs is not None else None
        if label is None:
            match = SEED_NAME.match(m.name)
            label = match.group("design") if match else m.name
        groups.setdefault(label, []).append(m)
    return groups


# --------------------------------------------------------------------------- items
def align_items(runs: list[DatasetItems]) -> tuple[list[list[Entry]] | None, list[str]]:
    """The entries of every run restricted to the items all runs share, in one order; None when
    the runs did not score the same items (different gold labels, no common entry)."""
    notes: list[str] = []
    keys = [{(e.split, e.hf_subset): e for e in r.entries} for r in runs]
    common = [k for k in keys[0] if all(k in other for other in keys[1:])]
    if not common:
        return None, ["the runs share no (split, subset) of item-level results"]
    aligned: list[list[Entry]] = [[] for _ in runs]
    for key in common:
        first = keys[0][key]
        shared = set(first.ids).intersection(*(set(k[key].ids) for k in keys[1:]))
        order = [i for i in first.ids if i in shared]
        if not order:
            return None, [f"{key[0]}/{key[1]}: the runs share no item"]
        most = max(k[key].n for k in keys)
        if len(order) < most:
            notes.append(f"{key[0]}/{key[1]}: aligned on {len(order)} items shared by every run (of {most})")
        gold = None
        for r, k in enumerate(keys):
            entry = k[key]
            pos = {item: j for j, item in enumerate(entry.ids)}
            selected = entry.select([pos[i] for i in order]) if entry.ids != order else entry
            g = selected.gold()
            if gold is None:
                gold = g
            elif g is not None and not np.array_equal(g, gold):
                return None, [f"{key[0]}/{key[1]}: gold labels differ between runs (not the same items)"]
            aligned[r].append(selected)
    return aligned, notes


def _dataset_entries(
    task: str, groups: dict[str, list[ModelResults]]
) -> tuple[dict[str, list[list[Entry]]] | None, list[str]]:
    runs = [m for ms in groups.values() for m in ms]
    missing = [m.name for m in runs if not m.items.get(task)]
    if missing:
        why = {m.items_problems.get(task) for m in runs if m.items_problems.get(task)}
        return None, [
            f"no item-level results for {', '.join(missing)}" + (f" ({'; '.join(why)})" if why else "")
        ]
    try:
        loaded = [read_items(m.items[task]) for m in runs]
    except ItemsError as exc:
        return None, [str(exc)]
    aligned, notes = align_items(loaded)
    if aligned is None:
        return None, notes
    runs_in_order = iter(aligned)
    return {design: [next(runs_in_order) for _ in ms] for design, ms in groups.items()}, notes


# --------------------------------------------------------------------------- comparison
def _sd(values: Sequence[float]) -> float | None:
    return float(np.std(values, ddof=1)) if len(values) > 1 else None


@dataclass(frozen=True)
class _Options:
    """The options of one comparison (``compare_models``'s keywords; the summary's ``settings``).

    ``rope``: one number for every family, a mapping family -> ROPE ("*" = the others), or None
    for ``verdict.DEFAULT_ROPE_POINTS``; ``fixed``: designs that are fixed checkpoints."""

    alpha: float = 0.05
    rope: float | dict[str, float] | None = None
    holm_scope: str = "family"
    n_resamples: int = N_RESAMPLES
    seed: int = 0
    power: float = 0.8
    min_datasets: int = 5
    bayes_samples: int = 50000
    fixed: tuple[str, ...] = ()

    def is_fixed(self, design: str) -> bool:
        """A fixed checkpoint (untrained baseline, published model): no training seed varies it."""
        return design in self.fixed or design.startswith(UNTRAINED_PREFIX)

    def __post_init__(self) -> None:
        object.__setattr__(self, "fixed", tuple(self.fixed))
        if self.holm_scope not in HOLM_SCOPES:
            raise ValueError(f"holm_scope: expected one of {', '.join(HOLM_SCOPES)}, got {self.holm_scope!r}")
        if self.n_resamples < 100:
            raise ValueError(f"n_resamples: at least 100, got {self.n_resamples}")
        ropes = self.rope.values() if isinstance(self.rope, dict) else [self.rope]
        for value in ropes:
            if value is not None and value < 0:
                raise ValueError(f"rope: must be >= 0, got {value}")


def _shared_datasets(models: list[ModelResults]) -> tuple[set[str], dict[str, list[str]], list[str]]:
    """(datasets every run has, datasets dropped per run, datasets down-sampled differently);
    the last two are also warnings, pointed at the caller of ``compare_models``."""
    common = set(models[0].scores).intersection(*(m.scores for m in models[1:]))
    dropped = {m.name: sorted(set(m.scores) - common) for m in models if set(m.scores) - common}
    if dropped:
        text = "; ".join(f"{name}: {', '.join(tasks)}" for name, tasks in dropped.items())
        warnings.warn(
            f"comparing on the {len(common)} datasets all models share; dropped {text}", stacklevel=3
        )
    if not common:
        raise ValueError("the results share no dataset")
    mismatched = sorted(
        t for t in common if len({json.dumps(m.sampling[t], sort_keys=True) for m in models}) > 1
    )
    if mismatched:
        warnings.warn(f"down-sampling differs between models on: {', '.join(mismatched)}", stacklevel=3)
    return common, dropped, mismatched


def _dataset_replicates(
    groups: dict[str, list[ModelResults]], family_of: dict[str, str], opts: _Options
) -> dict[str, DatasetReplicates]:
    """Every shared dataset's bootstrap replicates (items and seeds), in (family, task) order."""
    seed_idx = {
        g: rng_for(opts.seed, "seeds", g).integers(0, len(ms), size=(opts.n_resamples, len(ms)))
        for g, ms in groups.items()
    }
    replicates: dict[str, DatasetReplicates] = {}
    for task in sorted(family_of, key=lambda t: (family_of[t], t)):
        entries, notes = _dataset_entries(task, groups)
        runs = {g: [m.scores[task] for m in ms] for g, ms in groups.items()}
        rep = build_replicates(
            task, family_of[task], runs, entries, seed_idx, seed=opts.seed, n_resamples=opts.n_resamples
        )
        rep.notes = notes + rep.notes
        replicates[task] = rep
    return replicates


def _dataset_row(rep: DatasetReplicates, names: list[str], metric: str, sampling: Any) -> dict[str, Any]:
    """One dataset in the summary: scores, 95% CI and seed spread per design, items, notes."""
    return {
        "family": rep.family,
        "metric": metric,
        "sampling": sampling,
        "scores": dict(rep.obs),
        "ci95": {g: ci95(rep.rep(g)) for g in names},
        "runs": rep.runs,
        "seed_sd": {g: _sd(rep.runs[g]) for g in names},
        "items": rep.has_items,
        "n_items": rep.n_items,
        "notes": rep.notes,
    }


def _family_row(
    tasks: list[str], reps: list[DatasetReplicates], names: list[str], opts: _Options
) -> dict[str, Any]:
    """One family in the summary: mean, CI and seed spread per design, its ROPE; Friedman when
    it has >= 3 datasets and >= 3 designs, and Nemenyi when Friedman rejects."""
    info: dict[str, Any] = {"datasets": tasks, "n": len(tasks), "means": {}, "ci95": {}, "seed_sd": {}}
    for g in names:
        info["means"][g] = float(np.mean([r.obs[g] for r in reps]))
        ci = ci95(np.mean([r.rep(g) for r in reps], axis=0))  # these datasets held fixed
        info["ci95"][g] = ci if ci and ci[1] > ci[0] else None
        run_means = np.mean([r.runs[g] for r in reps], axis=0)
        info["seed_sd"][g] = _sd(run_means.tolist())
    info["item_level"] = all(r.has_items for r in reps)
    info["tested"] = len(tasks) >= opts.min_datasets  # the paper's rule, for the Wilcoxon column
    scores = np.array([[r.obs[g] for g in names] for r in reps])
    info["rope"] = rope_for(reps[0].family, opts.rope)
    if len(tasks) >= 3 and len(names) >= 3:
        info["friedman"] = friedman(scores)
        rejects = info["friedman"]["pvalue_f"] < opts.alpha
        info["nemenyi"] = nemenyi(scores, names) if rejects else None
    return info


def _pair_test(
    reps: list[DatasetReplicates],
    info: dict[str, Any],
    a: str,
    b: str,
    opts: _Options,
    seed_var: SeedVariance | None,
    span: float,
) -> dict[str, Any]:
    """Design ``a`` against ``b`` over one family (``info``: its row): the family t-test, Wilcoxon,
    Bayes, power (p-values before Holm; ``_holm_and_verdicts`` completes the row)."""
    family, rope, seed_sds = reps[0].family, info["rope"], info["seed_sd"]
    fixed = frozenset(g for g in (a, b) if opts.is_fixed(g))
    h, power = family_test(reps, a, b, seed_var=seed_var, fixed=fixed, rope=rope)
    scores_a, scores_b = [r.obs[a] for r in reps], [r.obs[b] for r in reps]
    w = wilcoxon_paired(scores_a, scores_b)
    w["family"] = family
    w["paper_rule"] = len(reps) >= opts.min_datasets
    bayes = asdict(
        bayesian_signed_rank(scores_a, scores_b, rope, nsamples=opts.bayes_samples, seed=opts.seed)
    )
    seed_sd = [s for s in (seed_sds[a], seed_sds[b]) if s is not None]
    return {
        "family": family,
        "model_a": a,
        "model_b": b,
        "n": len(reps),
        "diff": h["diff"],
        "wilcoxon": w,
        "hierarchical": h,
        "bayes": bayes,
        "power": power,
        "rope": rope,
        "span": span,
        "seed_sd": max(seed_sd) if seed_sd else None,
        "min_items": min((r.n_items for r in reps if r.has_items), default=None),
        "below_seed_spread": bool(seed_sd and abs(h["diff"]) < max(seed_sd)),
    }


def family_seed_variance(
    reps: list[DatasetReplicates], names: list[str], opts: _Options
) -> SeedVariance | None:
    """The seed variance of a family mean pooled over the trained designs with >= 2 seeds."""
    seeded = [g for g in names if not opts.is_fixed(g) and len(reps[0].runs[g]) > 1]
    if not seeded:
        return None
    means = [np.mean([r.runs[g] for r in reps], axis=0) for g in seeded]
    var, df = pooled_seed_variance(means)
    return SeedVariance(float(var), int(df), tuple(seeded))


def _test_families(
    replicates: dict[str, DatasetReplicates],
    names: list[str],
    opts: _Options,
    metrics: dict[str, str] | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
    """(family rows, per-dataset tests, family tests): every pair of designs within each family;
    ``metrics`` (task -> main score name) sets each family's largest possible difference."""
    by_family: dict[str, list[str]] = defaultdict(list)
    for task in sorted(replicates):
        by_family[replicates[task].family].append(task)
    families: dict[str, Any] = {}
    dataset_tests: list[dict[str, Any]] = []
    family_tests: list[dict[str, Any]] = []
    for family, tasks in sorted(by_family.items()):
        reps = [replicates[t] for t in tasks]
        info = families[family] = _family_row(tasks, reps, names, opts)
        seed_var = family_seed_variance(reps, names, opts)
        info["seed_variance"] = asdict(seed_var) if seed_var else None
        span = max((metric_span((metrics or {}).get(t, "")) for t in tasks), default=1.0)
        for a, b in itertools.combinations(names, 2):
            dataset_tests += [
                paired_dataset_test(r, a, b, seed=opts.seed, alpha=opts.alpha, power=opts.power) for r in reps
            ]
            family_tests.append(_pair_test(reps, info, a, b, opts, seed_var, span))
    return families, dataset_tests, family_tests


def _holm_and_verdicts(
    dataset_tests: list[dict[str, Any]], family_tests: list[dict[str, Any]], opts: _Options
) -> None:
    """Holm's correction (per family or global; for differences and, separately, equivalence
    claims), the Wilcoxon floor after Holm, the MDE at the Holm level, and each verdict."""
    scope = (lambda row: row["family"]) if opts.holm_scope == "family" else (lambda row: "all")
    holm_by(dataset_tests, scope)
    holm_by([t["hierarchical"] for t in family_tests], scope)
    holm_by([t["hierarchical"] for t in family_tests], scope, key="pvalue_tost", out="pvalue_tost_holm")
    holm_by([t["wilcoxon"] for t in family_tests], scope)
    sizes = Counter(scope(t) for t in family_tests)
    for t in dataset_tests:
        t["significant"] = t["pvalue_holm"] is not None and t["pvalue_holm"] < opts.alpha
    for t in family_tests:
        w = t["wilcoxon"]
        w["m"] = sizes[scope(t)]
        w["floor_holm"] = min(1.0, w["floor"] * w["m"])
        w["can_reject"] = w["floor_holm"] < opts.alpha
        h = t["hierarchical"]
        h["tests"] = w["m"]
        h["mde"] = mde(h["se"], h["df"] or math.nan, opts.alpha, opts.power, w["m"])
        h["mde"] = None if math.isnan(h["mde"]) else h["mde"]
        t["verdict"] = decide(t, opts.alpha, t["rope"])


def compare_models(
    models: list[ModelResults],
    *,
    designs: Sequence[str] | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Everything ``compare`` reports, as one JSON-ready dict (scores on the 0-1 scale);
    ``options``: the fields of ``_Options`` (alpha, rope, holm_scope, n_resamples, seed, power,
    min_datasets, bayes_samples, fixed)."""
    if len(models) < 2:
        raise ValueError("compare needs at least two results directories")
    opts = _Options(**options)
    counts = Counter(m.name for m in models)
    for m in models:  # unique run names
        if counts[m.name] > 1:
            m.name = f"{m.name} ({Path(m.directory).name})"
    groups = design_groups(models, designs)
    if len(groups) < 2:
        raise ValueError(f"compare needs at least two designs; all runs are seeds of {next(iter(groups))!r}")
    names = list(groups)
    common, dropped, mismatched = _shared_datasets(models)
    replicates = _dataset_replicates(groups, {t: models[0].families[t] for t in common}, opts)
    datasets = {
        task: _dataset_row(rep, names, models[0].metrics[task], models[0].sampling[task])
        for task, rep in replicates.items()
    }
    families, dataset_tests, family_tests = _test_families(
        replicates, names, opts, {t: models[0].metrics[t] for t in common}
    )
    _holm_and_verdicts(dataset_tests, family_tests, opts)
    return {
        "models": [
            {
                "name": m.name,
                "design": next(g for g, ms in groups.items() if any(m is r for r in ms)),
                "directory": m.directory,
                "model_design": m.design,
                "fingerprint": m.fingerprint,
                "settings": m.settings,
            }
            for m in models
        ],
        "designs": {g: {"runs": [m.name for m in ms], "seeds": len(ms)} for g, ms in groups.items()},
        "settings": asdict(opts),
        "min_datasets": opts.min_datasets,
        "alpha": opts.alpha,
        "families": families,
        "datasets": datasets,
        "dataset_tests": dataset_tests,
        "family_tests": family_tests,
        "dropped": dropped,
        "sampling_mismatch": mismatched,
    }


def compare(
    result_dirs: Sequence[str | Path],
    output_dir: str | Path,
    *,
    plots: bool = True,
    names: Sequence[str] | None = None,
    plan_target: float | None = None,
    plan: bool = False,
    **options: Any,
) -> dict[str, Any]:
    """Load results directories, compare them and write report.md, scores.csv, stats.json, plots.

    ``names`` overrides the run names (default: each directory's design) in the same order;
    ``plan_target`` (0-1 scale) adds a planning section: what detecting that effect needs
    (``plan=True`` alone: each family's ROPE); ``options`` go to ``compare_models``."""
    from .report import write_comparison_report

    models = [load_results(d) for d in result_dirs]
    if names is not None:
        if len(names) != len(models):
            raise ValueError(f"names: got {len(names)} names for {len(models)} results directories")
        for model, name in zip(models, names, strict=True):
            model.name = name
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        summary = compare_models(models, **options)
    summary["warnings"] = [str(w.message) for w in caught]
    summary["plan_target"] = plan_target
    summary["plan"] = plan or plan_target is not None
    for w in caught:  # re-emit so callers (and the CLI) still see them
        warnings.warn(str(w.message), w.category, stacklevel=2)
    write_comparison_report(summary, Path(output_dir), plots=plots)
    return summary
