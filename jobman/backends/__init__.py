"""Backends: one SageMaker-shaped async interface (base.py), two clouds behind it."""
