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


def similarity_demo(base: str = "smollm2-135m") -> str:
    """Embed SENTENCES with each design in DESIGNS and render their cosine similarity tables."""
    width = max(len(s) for s in SENTENCES)
    labels = [f"s{i + 1}" for i in range(len(SENTENCES))]
    parts = []
    for pooling, attention in DESIGNS:
        model = EmbeddingModel.from_pretrained(base, attention=attention, pooling=pooling)
        emb = model.encode(list(SENTENCES))
        parts.append(f"design {model.config.name} (untrained, base {base}):")
        parts.append(" " * (width + 6) + "".join(f"{label:>7}" for label in labels))
        for label, sentence, row in zip(labels, SENTENCES, emb @ emb.T, strict=True):
            parts.append(f"{label:>3}  {sentence:<{width}} " + "".join(f"{value:7.3f}" for value in row))
        parts.append("")
    return "\n".join(parts)
