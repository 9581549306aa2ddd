"""digits-search: hyperparameter search for handwritten-digit CNNs."""

__version__ = "0.1.0"
