"""Code that runs inside Ray: data, model, training, tuning, serving, checkpoint index, tracking.

Importing this package is cheap; heavy libraries (torch, ray, lightning, mlflow) are imported by the
modules that need them.
"""
