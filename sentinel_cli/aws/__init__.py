"""Amazon: an eksctl cluster config and its autoscaler (``eks``), the pods' S3 policy (``iam``)."""
