"""Network building blocks shared by learners and the exporter."""

from robolearn.networks.mlp import MLP, EnsembleMLP, MLPPolicy
from robolearn.networks.normalizer import EmpiricalNormalizer

__all__ = ["MLP", "EmpiricalNormalizer", "EnsembleMLP", "MLPPolicy"]
