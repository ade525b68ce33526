"""mtkd: multi-teacher knowledge distillation for text classification, as a DVC pipeline."""

__version__ = "0.1.0"
