"""Lossless compression by removing stable units: the math and the step."""
