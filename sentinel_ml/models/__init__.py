"""The models. ``hyperparameters`` (the one table of training hyperparameters), ``spec`` (what a model
is: ``ModelSpec``), ``specs/`` (one module per model), ``registry`` (the specs by name), ``config``
(``ModelConfig``, what a checkpoint records), ``served`` (a checkpoint's network, whichever model),
the networks ``biased_mf`` and ``autorec``, ``module`` (the LightningModule that trains any of them) and
``evaluation`` (RMSE on a split)."""
