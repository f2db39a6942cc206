"""Storage: the local + S3 funnel (``uri``), checkpoint files (``checkpoint``), and the index of runs
with the one resolver of ``latest | best | <run id> | <uri>`` (``index``)."""
