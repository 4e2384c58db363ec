"""Multi-layer perceptrons, and the deployable MLP policy (normalizer + MLP + output squashing)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from robolearn.networks.normalizer import EmpiricalNormalizer

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "elu": nn.ELU,
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
}


class MLP(nn.Sequential):
    """Linear layers with one activation between them; the output layer is linear."""

    def __init__(self, in_dim: int, hidden: list[int] | tuple[int, ...], out_dim: int, activation: str = "elu") -> None:
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation '{activation}'; choose from {sorted(ACTIVATIONS)}")
        layers: list[nn.Module] = []
        dims = [in_dim, *hidden]
        for a, b in zip(dims[:-1], dims[1:], strict=True):
            layers += [nn.Linear(a, b), ACTIVATIONS[activation]()]
        layers.append(nn.Linear(dims[-1], out_dim))
        super().__init__(*layers)
        self.activation = activation
        self.hidden = list(hidden)

    @property
    def linears(self) -> list[nn.Linear]:
        """The Linear layers in order (what the C generator walks)."""
        return [m for m in self if isinstance(m, nn.Linear)]


class EnsembleMLP(nn.Module):
    """`members` independent MLPs of the same shape evaluated as one batched network (B, in) -> (members, B, out).

    Each layer is one batched matmul (`torch.baddbmm`) over the members instead of one small matmul per member:
    TD3's twin critics cost half the kernel launches, which is what bounds small-network updates on a CPU.
    Each member is initialized like `nn.Linear` (independently), so the members start different.
    """

    def __init__(self, members: int, in_dim: int, hidden: list[int] | tuple[int, ...], out_dim: int,
                 activation: str = "elu") -> None:  # fmt: skip
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation '{activation}'; choose from {sorted(ACTIVATIONS)}")
        dims = [in_dim, *hidden, out_dim]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for a, b in zip(dims[:-1], dims[1:], strict=True):
            layers = [nn.Linear(a, b) for _ in range(members)]
            self.weights.append(nn.Parameter(torch.stack([m.weight.detach().T for m in layers])))  # (E, a, b)
            self.biases.append(nn.Parameter(torch.stack([m.bias.detach() for m in layers]).unsqueeze(1)))  # (E, 1, b)
        self.act = ACTIVATIONS[activation]()
        self.members = members

    def forward(self, x: Tensor) -> Tensor:
        """(B, in) shared by every member, or (members, B, in) -> (members, B, out)."""
        if x.dim() == 2:
            x = x.unsqueeze(0).expand(self.members, -1, -1)
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            x = torch.baddbmm(b, x, w)
            if i < last:
                x = self.act(x)
        return x

    def member(self, i: int, x: Tensor) -> Tensor:
        """Member `i` alone: (B, in) -> (B, out)."""
        last = len(self.weights) - 1
        for k, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            x = torch.addmm(b[i], x, w[i])
            if k < last:
                x = self.act(x)
        return x


class MLPPolicy(nn.Module):
    """Deterministic actor for deployment: raw policy observation (B, D) -> normalized action (B, A) in [-1, 1].

    `output` is "tanh" (squashed, e.g. TD3/SAC actors) or "clamp" (Gaussian mean clipped, e.g. PPO).
    This is the module the exporter writes to safetensors, ONNX and C.
    """

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        hidden: list[int] | tuple[int, ...] = (64, 64),
        activation: str = "tanh",
        output: str = "tanh",
    ) -> None:
        super().__init__()
        if output not in ("tanh", "clamp"):
            raise ValueError(f"unknown output '{output}'; choose 'tanh' or 'clamp'")
        self.normalizer = EmpiricalNormalizer(obs_dim)
        self.mlp = MLP(obs_dim, hidden, action_dim, activation)
        self.output = output
        self.obs_dim, self.action_dim = obs_dim, action_dim
        # start as the neutral action (a ≈ 0, e.g. hover): a small last layer, as in CleanRL's PPO (std 0.01)
        last = self.mlp.linears[-1]
        torch.nn.init.orthogonal_(last.weight, gain=0.001)
        torch.nn.init.zeros_(last.bias)

    def forward_raw(self, obs: Tensor) -> Tensor:
        """Pre-squash output (B, A)."""
        return self.mlp(self.normalizer(obs))

    def forward(self, obs: Tensor) -> Tensor:
        """Action (B, A) in [-1, 1]."""
        return self.forward_normalized(self.normalizer(obs))

    def forward_normalized(self, obs: Tensor) -> Tensor:
        """Action (B, A) from an observation already passed through `normalizer` (fits over a fixed dataset)."""
        out = self.mlp(obs)
        return out.tanh() if self.output == "tanh" else out.clamp(-1.0, 1.0)

    def describe(self) -> dict:
        """Architecture summary for manifests and for rebuilding the module from weights."""
        return {
            "kind": "mlp",
            "obs_dim": self.obs_dim,
            "action_dim": self.action_dim,
            "hidden": self.mlp.hidden,
            "activation": self.mlp.activation,
            "output": self.output,
        }

    @classmethod
    def from_description(cls, d: dict) -> MLPPolicy:
        """Inverse of `describe` (weights are loaded separately)."""
        return cls(d["obs_dim"], d["action_dim"], d["hidden"], d["activation"], d["output"])
