"""The ``local`` target: training and tuning in this process's Ray (``backend``), serving on a detached
local Ray (``ray_cluster``, ``serving``), and the prerequisites ``up``/``doctor`` check (``platform``)."""
