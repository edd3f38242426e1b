"""Evaluating converted models: inputs, comparisons, accuracy, calibration, energy."""
