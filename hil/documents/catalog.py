"""Every document pcm-hil's procedures emit: importing this module registers them all, so a
reader of the run store can turn any stored document back into its class."""

from pcm_hil.documents import analog, characterize, demo, drift, program, sweep

__all__ = ["analog", "characterize", "demo", "drift", "program", "sweep"]
