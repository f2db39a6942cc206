"""Hyperparameter studies with Ray Tune: the search space, the study, its trials and their progress.

The schedulers' names live here, cheap to import (the CLI builds its ``--scheduler`` choice from them):
``asha`` stops weak trials at rungs; ``fifo`` runs every trial to the end, for comparison.
"""

SCHEDULERS = ("asha", "fifo")
