"""Reference Transformers for the digits experiments (PyTorch; see models/train.py)."""
