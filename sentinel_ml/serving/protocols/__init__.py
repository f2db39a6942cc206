"""The replica's routes, one module per protocol, each a mixin of ``sentinel_ml.serving.replica.Replica``:
``recommend`` (Sentinel's ``/recommend``), ``tfserving`` (TF-Serving REST, ``/v1``), ``oip_rest``
(the Open Inference Protocol over REST, ``/v2``) and ``oip_grpc`` (its gRPC service). The REST
routes register on the one FastAPI app (``sentinel_ml.serving.ingress.api``) when imported; the
contracts they answer by are ``sentinel_ml.serving.api``, ``tfserving`` and ``oip``."""
