"""Compute, defined once: the device a job trains on, the CPUs and GPUs of one unit of it (a Ray Train
worker, a Ray Tune trial, a Ray Serve replica) and the training precision. Plain data, cheap to import and to
pickle (no torch, no Ray): the CLI's flags build it, the jobs' command line carries it
(``job_args`` / ``from_args``), and every layer reads it from here: Lightning (``lightning_kwargs``),
Ray Train (``ScalingConfig``'s resources per worker), Ray Tune (``tune.with_resources``), Ray Serve (the
replica's ``ray_actor_options``), the local capacity check and the Kubernetes pods (``pod_gpus``:
``nvidia.com/gpu`` is a whole number; ``pod_cpu``: a worker pod's CPU request).

``cpus``: Ray's logical CPUs per unit, a fraction allowed; ``None`` is the unit kind's default, defined
here once: a training worker ``TRAIN_WORKER_CPUS`` (its loop runs one torch thread), a serve replica
``SERVE_REPLICA_CPUS``, a tune trial the Ray cluster's CPUs shared between the trials running at once
(``sentinel_ml.tuning.study.shared_cpus_per_worker``).

``device``: ``cpu`` never uses a GPU; ``gpu`` always does (one a unit unless ``gpus`` says otherwise,
and it fails where there is none); ``auto`` (the default) uses GPUs when they are asked for
(``gpus > 0``), else when there are some to use: the Ray cluster's GPUs shared between the units, or,
in-process (one training worker, Ray Train's local mode), CUDA as torch sees it. ``settle`` turns
``auto`` into ``cpu`` or ``gpu`` once, in the driver, which then says which it chose.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, replace

from sentinel_ml.errors import ConfigError

AUTO, CPU, GPU = "auto", "cpu", "gpu"
DEVICES = (AUTO, CPU, GPU)
PRECISIONS = ("32", "bf16-mixed", "16-mixed")  # Lightning's names
DEFAULT_PRECISION = "32"
TRAIN_WORKER_CPUS = 1.0  # a Ray Train worker's reservation: its loop runs one torch thread
SERVE_REPLICA_CPUS = 0.5  # a Ray Serve replica's reservation: two score on one core
# The flags that carry a unit's CPUs (beside the GPU flags: --gpus, --gpus-per-trial, serve --gpus)
TRAIN_CPUS_FLAG, TUNE_CPUS_FLAG, SERVE_CPUS_FLAG = "--cpus-per-worker", "--cpus-per-trial", "--cpus"


def check_cpus(cpus: float | None, flag: str) -> None:
    """CPUs per unit: None (the unit's default) or positive; fractions allowed (Ray's logical CPUs)."""
    if cpus is not None and not (cpus > 0 and math.isfinite(cpus)):
        raise ConfigError(f"{flag} {cpus:g}: CPUs per unit must be positive (a fraction such as 0.5 is allowed)",
                          hint=f"leave {flag} out for the default, or give a number above 0")


@dataclass(frozen=True)
class Compute:
    device: str = AUTO  # auto | cpu | gpu
    gpus: float = 0.0  # per unit (train worker, tune trial, serve replica); fractions share a GPU
    precision: str = DEFAULT_PRECISION  # training only: 32 | bf16-mixed | 16-mixed
    cpus: float | None = None  # per unit; None: the unit kind's default (see the module's docstring)

    def validate(self, gpus_flag: str = "--gpus", cpus_flag: str = TRAIN_CPUS_FLAG) -> None:
        check_cpus(self.cpus, cpus_flag)
        checks = [
            (self.device in DEVICES, f"--device must be one of: {', '.join(DEVICES)}", None),
            (self.precision in PRECISIONS, f"--precision must be one of: {', '.join(PRECISIONS)}", None),
            (self.gpus >= 0, f"{gpus_flag} must be at least 0", None),
            (self.gpus <= 1 or self.gpus == int(self.gpus),
             f"{gpus_flag} {self.gpus:g}: a fraction shares one GPU; more than one must be a whole number",
             f"use {gpus_flag} {math.ceil(self.gpus)} or at most 1"),
            (not (self.device == CPU and self.gpus > 0), f"--device cpu with {gpus_flag} {self.gpus:g}",
             f"drop {gpus_flag}, or use --device gpu (or auto)"),
            (not (self.device == CPU and self.precision == "16-mixed"),
             "--precision 16-mixed needs a GPU (Lightning runs 16-bit mixed precision on CUDA only)",
             "use --precision bf16-mixed on CPUs, or train on a GPU"),
        ]
        for ok, message, hint in checks:
            if not ok:
                raise ConfigError(message, hint=hint)

    @property
    def asked(self) -> float:
        """GPUs a unit asks for before ``settle``: ``gpus``, or one when ``--device gpu`` names none."""
        return self.gpus or (1.0 if self.device == GPU else 0.0)

    @property
    def on_gpu(self) -> bool:
        """Whether this (settled) compute trains on a GPU."""
        return self.device == GPU

    def settle(self, available: float, units: int = 1) -> Compute:
        """``cpu`` or ``gpu`` with the GPUs per unit, given the GPUs ``available`` to ``units`` units at once
        (the Ray cluster's, or torch's CUDA devices in-process). ``auto`` with none asked shares the
        available GPUs (at most one a unit, in hundredths rounded down). ``gpu`` where none is available is
        refused; so is ``16-mixed`` precision on a CPU."""
        if self.device == CPU:
            return self
        if self.asked > 0:
            if available <= 0 and self.device == GPU:
                raise ConfigError("--device gpu, but there is no GPU here (torch sees no CUDA device and Ray "
                                  "has no GPU resources)", hint="use --device cpu or auto, or run where a GPU is")
            return replace(self, device=GPU, gpus=self.asked)
        share = min(1.0, math.floor(available / max(1, units) * 100) / 100)
        if share > 0:
            return replace(self, device=GPU, gpus=share)
        settled = replace(self, device=CPU)
        settled.validate()
        return settled

    def cpus_or(self, default: float) -> float:
        """CPUs a unit reserves: ``cpus``, or the unit kind's ``default`` (``TRAIN_WORKER_CPUS`` …)."""
        return self.cpus if self.cpus is not None else default

    def describe(self, unit: str) -> str:
        """``device cuda, 1 GPU per worker, precision 32`` / ``device cpu, precision 32``: what a settled
        compute runs on, for the progress line."""
        if not self.on_gpu:
            return f"device cpu, precision {self.precision}"
        return f"device cuda, {self.gpus:g} GPU per {unit}, precision {self.precision}"

    def lightning_kwargs(self) -> dict[str, str]:
        """``pl.Trainer``'s accelerator and precision (a settled compute)."""
        return {"accelerator": "gpu" if self.on_gpu else "cpu", "precision": self.precision}

    def pod_gpus(self) -> int:
        """Whole GPUs a pod of one unit needs (``nvidia.com/gpu``): a fraction still takes a GPU."""
        return math.ceil(self.asked)

    def job_args(self, gpus_flag: str = "--gpus", cpus_flag: str = TRAIN_CPUS_FLAG) -> list[str]:
        """The flags ``add_args`` reads, only those that differ from the defaults (so a CPU job's command
        line reads as it always has)."""
        words = []
        if self.cpus is not None:
            words += [cpus_flag, f"{self.cpus:g}"]
        if self.device != AUTO:
            words += ["--device", self.device]
        if self.gpus:
            words += [gpus_flag, f"{self.gpus:g}"]
        if self.precision != DEFAULT_PRECISION:
            words += ["--precision", self.precision]
        return words

    @staticmethod
    def add_args(parser: argparse.ArgumentParser, gpus_flag: str = "--gpus", cpus_flag: str = TRAIN_CPUS_FLAG) -> None:
        parser.add_argument(cpus_flag, dest="cpus", type=float, default=None)
        parser.add_argument("--device", choices=DEVICES, default=AUTO)
        parser.add_argument(gpus_flag, dest="gpus", type=float, default=0.0)
        parser.add_argument("--precision", choices=PRECISIONS, default=DEFAULT_PRECISION)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Compute:
        return cls(device=args.device, gpus=args.gpus, precision=args.precision, cpus=args.cpus)


def pod_cpu(cpus: float) -> str:
    """A Kubernetes CPU quantity for ``cpus`` (``2``, ``500m``), rounded up to the millicore."""
    return str(int(cpus)) if cpus == int(cpus) else f"{math.ceil(round(cpus * 1000, 6))}m"


def ray_node_cpus(cpus: float) -> int:
    """Ray's ``num-cpus`` for a pod that requests ``cpus``: a whole number (``ray start`` takes no
    fraction), rounded up as KubeRay rounds a pod's CPU request up when it derives it."""
    return math.ceil(round(cpus, 6))


def cuda_devices() -> int:
    """CUDA devices torch sees in this process (0 without a GPU or without CUDA in torch)."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0
