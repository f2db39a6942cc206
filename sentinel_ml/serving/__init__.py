"""Serving: names and defaults (``config``), the API contracts (``api`` for /recommend and what every
protocol shares, ``tfserving`` for TF-Serving REST, ``oip`` for the Open Inference Protocol over REST
and gRPC, with ``grpc_predict_v2.proto`` and its generated modules), inference (``recommender``) and
the Ray Serve application (``app``)."""
