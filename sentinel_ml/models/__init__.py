"""The models: their names and defaults (``registry``), the served network (``biased_mf``), AutoRec
(``autorec``), the LightningModule that trains either (``module``) and RMSE on a split (``evaluation``)."""
