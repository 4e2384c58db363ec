"""Arm manipulation tasks on a MuJoCo backend (`arm-reach`, `arm-lift`) and their scripted experts."""
