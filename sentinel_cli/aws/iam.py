"""The least-privilege IAM policy the pods' IRSA role needs: one bucket (and one prefix in it)."""

from __future__ import annotations

from typing import Any


def bucket_policy(bucket: str, prefix: str = "") -> dict[str, Any]:
    """Read, write, list and delete objects under ``s3://bucket/prefix`` and nothing else."""
    prefix = prefix.strip("/")
    objects = f"arn:aws:s3:::{bucket}/{prefix + '/' if prefix else ''}*"
    listing: dict[str, Any] = {
        "Sid": "ListTheBucket", "Effect": "Allow",
        "Action": ["s3:ListBucket", "s3:GetBucketLocation"],
        "Resource": f"arn:aws:s3:::{bucket}",
    }
    if prefix:
        listing["Condition"] = {"StringLike": {"s3:prefix": [prefix, f"{prefix}/*"]}}
    return {
        "Version": "2012-10-17",
        "Statement": [
            listing,
            {"Sid": "ReadWriteCheckpoints", "Effect": "Allow",
             "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"],
             "Resource": objects},
        ],
    }
