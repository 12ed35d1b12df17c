"""actlab: activation-level methods (IA2, IAV, cross-model, ICAE) for Hugging Face causal LMs."""

__version__ = "0.1.0"
