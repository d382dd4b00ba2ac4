"""Immunogold particles: synthetic training data (and, in time, detection and evaluation)."""

from __future__ import annotations

from .synth import (
    NEGATIVE_DTYPE,
    NEGATIVE_KINDS,
    PARTICLE_DTYPE,
    SynthConfig,
    SynthImage,
    synth_batch,
    synthesize,
)

__all__ = [
    "NEGATIVE_DTYPE",
    "NEGATIVE_KINDS",
    "PARTICLE_DTYPE",
    "SynthConfig",
    "SynthImage",
    "synth_batch",
    "synthesize",
]
