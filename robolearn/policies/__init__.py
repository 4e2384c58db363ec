"""Imitation policies, configuration and policy in one file each: `act.py` (ACT), `diffusion.py` (Diffusion Policy)."""
