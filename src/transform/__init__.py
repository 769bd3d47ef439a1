"""The two-hidden-layer transformation: construction, size formulas, verification, the step."""
