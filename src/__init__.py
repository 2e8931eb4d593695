"""msc: multimodal sentiment classification on MVSA-Single, tracked end to end."""

LABELS = ("positive", "neutral", "negative")
"""Class order used everywhere: label ids, logits columns, probability columns."""
