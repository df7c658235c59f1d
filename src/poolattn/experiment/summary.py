"""A plain-language summary written from the comparison's verdicts, and nothing else: per family
what was decided, what the data could have detected for the rest, and the positive control
(if training does not beat the untrained model, nothing else matters)."""

from __future__ import annotations

from typing import Any

from ..eval_results import SCALE
from .plan import UNTRAINED_PREFIX


def is_baseline(design: str) -> bool:
    return design.startswith(UNTRAINED_PREFIX)


def control_pairs(designs: list[str]) -> list[tuple[str, str]]:
    """(trained design, untrained baseline) for every trained design and baseline."""
    baselines = [d for d in designs if is_baseline(d)]
    return [(d, b) for d in designs if not is_baseline(d) for b in baselines]


def _mde_range(rows: list[dict[str, Any]]) -> str:
    """What the undecided ``rows`` could have detected: their MDE range, and the pairs whose MDE
    exceeds the largest possible difference of the metric (the data cannot decide those)."""
    known = [
        (r["hierarchical"]["mde"], r.get("span", 1.0))
        for r in rows
        if r["hierarchical"].get("mde") is not None
    ]
    if not known:
        return "the data cannot measure its own noise"
    useful = [m * SCALE for m, span in known if m < span]
    hopeless = len(known) - len(useful)
    parts = []
    if useful:
        low, high = min(useful), max(useful)
        span_text = f"{low:.2f}" if high - low < 0.005 else f"{low:.2f}–{high:.2f}"
        parts.append(f"only differences ≥ {span_text} points could be detected")
    if hopeless:
        which = f"for {hopeless} pair(s) the data" if useful else "this data"
        never = "even the largest possible difference of the metric would not be detected"
        parts.append(f"{which} cannot decide at all ({never})")
    return "; ".join(parts)


def summarise(comparison: dict[str, Any]) -> list[str]:
    """Markdown bullet lines summarising ``comparison`` (the dict returned by ``stats.compare``)."""
    designs = list(comparison["designs"])
    controls = {frozenset(p) for p in control_pairs(designs)}
    lines: list[str] = []
    if not comparison["families"]:
        return ["- The runs share no evaluated dataset; nothing can be concluded."]
    for family, info in comparison["families"].items():
        rows = [t for t in comparison["family_tests"] if t["family"] == family]
        design_rows = [t for t in rows if frozenset((t["model_a"], t["model_b"])) not in controls]
        control_rows = [t for t in rows if frozenset((t["model_a"], t["model_b"])) in controls]
        best = max(info["means"], key=lambda n: info["means"][n])
        lines.append(
            f"- **{family}** ({info['n']} dataset{'s' if info['n'] != 1 else ''}; highest mean {best} "
            f"{info['means'][best] * SCALE:.2f}):"
        )
        lines += [f"  - {t['verdict']['text']}." for t in design_rows if t["verdict"]["kind"] != "undecided"]
        undecided = [t for t in design_rows if t["verdict"]["kind"] == "undecided"]
        if undecided:
            pairs = (
                "all design pairs"
                if len(undecided) == len(design_rows)
                else f"{len(undecided)} other pair(s)"
            )
            lines.append(f"  - Undecided for {pairs}: {_mde_range(undecided)}.")
        for t in control_rows:
            a, b = t["model_a"], t["model_b"]
            trained, baseline = (b, a) if is_baseline(a) else (a, b)
            v = t["verdict"]
            if v["kind"] == "better":
                word = "beats" if v["winner"] == trained else "is beaten by"
                lines.append(f"  - Positive control: {trained} {word} {baseline} ({v['text']}).")
            else:
                lines.append(f"  - Positive control: {trained} vs {baseline}: {v['text']}.")
        lines += [
            f"  - {t['model_a']} vs {t['model_b']}: the difference ({t['diff'] * SCALE:+.2f}) is smaller "
            f"than the seed-to-seed spread (SD {t['seed_sd'] * SCALE:.2f})."
            for t in rows
            if t.get("below_seed_spread")
        ]
    every = comparison["family_tests"]
    if every and all(t["verdict"]["kind"] == "undecided" for t in every):
        lines.append(
            f"- No comparison is decided: {_mde_range(every)}. More items per dataset, datasets or seeds "
            "would resolve smaller differences (`poolattn compare ... --plan`)."
        )
    return lines
