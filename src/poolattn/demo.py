"""A first look at the model: two designs, a few sentences, their cosine similarities."""

from __future__ import annotations

from .model import EmbeddingModel

SENTENCES = (
    "A man is playing a guitar.",
    "Someone plays an instrument.",
    "The stock market fell today.",
    "Shares dropped sharply this afternoon.",
)
DESIGNS = (("eos", "causal"), ("mean", "bidirectional"))


def similarity_table(names: list[str], matrix) -> str:  # noqa: ANN001 - any 2-D array
    """A plain-text table of a square similarity matrix."""
    width = max(len(n) for n in names)
    labels = [f"s{i + 1}" for i in range(len(names))]
    lines = [" " * (width + 6) + "".join(f"{label:>7}" for label in labels)]
    for i, name in enumerate(names):
        lines.append(
            f"{labels[i]:>3}  {name:<{width}} " + "".join(f"{matrix[i][j]:7.3f}" for j in range(len(names)))
        )
    return "\n".join(lines)


def similarity_demo(base: str = "smollm2-135m") -> str:
    """Embed SENTENCES with each design in DESIGNS and render the similarity tables."""
    parts = []
    for pooling, attention in DESIGNS:
        model = EmbeddingModel.from_pretrained(base, attention=attention, pooling=pooling)
        emb = model.encode(list(SENTENCES))
        parts.append(f"design {model.config.name} (untrained, base {base}):")
        parts.append(similarity_table(list(SENTENCES), emb @ emb.T))
        parts.append("")
    return "\n".join(parts)
