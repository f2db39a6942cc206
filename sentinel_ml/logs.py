"""Keep library chatter at the level the caller chose.

Lightning and Ray set their own loggers to INFO when imported, which floods stderr with banners and
tips. After importing them, call ``follow_root_level`` so they obey the root logger's level
(``sentinel -v`` lowers it to DEBUG and brings everything back).
"""

from __future__ import annotations

import logging

NOISY_LOGGERS = ("lightning", "lightning.pytorch", "lightning.fabric", "ray", "ray.train", "ray.tune",
                 "ray.serve", "mlflow", "alembic")


def follow_root_level(*names: str) -> None:
    if logging.getLogger().level <= logging.INFO:
        return
    for name in names or NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
