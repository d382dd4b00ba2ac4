"""Immunogold particles in freeze-fracture replica (FRIL) micrographs.

:mod:`emdig.particles.synth` draws realistic synthetic micrographs with exact ground truth, for
training and testing a detector.
"""

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
