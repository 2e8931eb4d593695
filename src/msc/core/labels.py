"""The class labels, in the order used everywhere: label ids, logit columns, probability columns."""

LABELS = ("positive", "neutral", "negative")
