"""jobman: run machine-learning experiments on Amazon SageMaker (or a local twin) as a controller."""

__version__ = "0.1.0"
