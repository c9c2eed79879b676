"""The course's ContextUnet, module for module, so course checkpoints load with strict keys.

One deliberate change: the course's `ResidualConvBlock(in, out, is_res=True)` with in != out builds a
fresh, randomly initialised 1×1 conv on every forward. Here that shortcut is a policy of the block:

    course   a fresh nn.Conv2d(in, out, 1) per forward (the course's random behaviour; tests only)
    seed:N   frozen weights drawn by torch.manual_seed(N); nn.Conv2d(in, out, 1) — equals the course
             forward called right after torch.manual_seed(N)
    zero     no shortcut (its expectation over the random init is zero)
    learned  a registered 1×1 conv (`init_conv.shortcut.*` in the state_dict): our own trained models

Shapes for the default model (C=3, H=W=16, n_feat=64): comments give [N, channels, H, W].
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass

import torch
from torch import nn

from ddpm_edge.runtime.errors import DdpmEdgeError

SQRT2 = 1.414  # the course divides residual sums by this literal


def parse_shortcut(policy: str) -> str:
    """Normalise a policy string; raise with a reason when it is not one of the four."""
    policy = str(policy).strip().lower()
    if policy in ("course", "zero", "learned") or re.fullmatch(r"seed:-?\d+", policy):
        return policy
    raise DdpmEdgeError(f"unknown shortcut policy {policy!r}; use seed:N (e.g. seed:0), zero or learned")


class ResidualConvBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, is_res: bool = False):
        super().__init__()
        self.same_channels = in_channels == out_channels
        self.is_res = is_res
        self.conv1 = nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, 1, 1), nn.BatchNorm2d(out_channels), nn.GELU())
        self.conv2 = nn.Sequential(nn.Conv2d(out_channels, out_channels, 3, 1, 1), nn.BatchNorm2d(out_channels), nn.GELU())
        self.shortcut_policy = "course"  # only used when is_res and channels differ
        self.shortcut: nn.Module | None = None

    def set_shortcut(self, policy: str) -> None:
        """Fix the channel-changing shortcut (see module doc). Call after loading a course state_dict."""
        policy = parse_shortcut(policy)
        in_channels, out_channels = self.conv1[0].in_channels, self.conv1[0].out_channels
        self.shortcut_policy = policy
        if policy.startswith("seed:"):
            device = self.conv1[0].weight.device
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(policy.split(":")[1]))
                conv = nn.Conv2d(in_channels, out_channels, kernel_size=1)
            self.shortcut = conv.to(device).requires_grad_(False)
        elif policy == "learned":
            self.shortcut = nn.Conv2d(in_channels, out_channels, kernel_size=1).to(self.conv1[0].weight.device)
        else:
            self.shortcut = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.conv1(x)
        x2 = self.conv2(x1)
        if not self.is_res:
            return x2
        if self.same_channels:
            return (x + x2) / SQRT2
        if self.shortcut_policy == "course":
            shortcut = nn.Conv2d(x.shape[1], x2.shape[1], kernel_size=1).to(x.device)
            return (shortcut(x) + x2) / SQRT2
        if self.shortcut is None:  # zero
            return x2 / SQRT2
        return (self.shortcut(x) + x2) / SQRT2


class UnetDown(nn.Module):
    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.model = nn.Sequential(ResidualConvBlock(in_channels, out_channels),
                                   ResidualConvBlock(out_channels, out_channels), nn.MaxPool2d(2))

    def forward(self, x):
        return self.model(x)


class UnetUp(nn.Module):
    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.model = nn.Sequential(nn.ConvTranspose2d(in_channels, out_channels, 2, 2),
                                   ResidualConvBlock(out_channels, out_channels),
                                   ResidualConvBlock(out_channels, out_channels))

    def forward(self, x, skip):
        return self.model(torch.cat((x, skip), 1))


class EmbedFC(nn.Module):
    def __init__(self, input_dim: int, emb_dim: int):
        super().__init__()
        self.input_dim = input_dim
        self.model = nn.Sequential(nn.Linear(input_dim, emb_dim), nn.GELU(), nn.Linear(emb_dim, emb_dim))

    def forward(self, x):
        return self.model(x.view(-1, self.input_dim))


@dataclass(frozen=True)
class UnetConfig:
    in_channels: int = 3
    n_feat: int = 64
    n_cfeat: int = 5
    height: int = 16

    def as_dict(self) -> dict:
        return asdict(self)


class ContextUnet(nn.Module):
    def __init__(self, in_channels: int = 3, n_feat: int = 64, n_cfeat: int = 5, height: int = 16):
        super().__init__()
        if height % 4 or height < 4:
            raise DdpmEdgeError(f"image height must be a positive multiple of 4, got {height}")
        self.in_channels, self.n_feat, self.n_cfeat, self.h = in_channels, n_feat, n_cfeat, height
        self.init_conv = ResidualConvBlock(in_channels, n_feat, is_res=True)
        self.down1 = UnetDown(n_feat, n_feat)
        self.down2 = UnetDown(n_feat, 2 * n_feat)
        self.to_vec = nn.Sequential(nn.AvgPool2d(4), nn.GELU())
        self.timeembed1 = EmbedFC(1, 2 * n_feat)
        self.timeembed2 = EmbedFC(1, 1 * n_feat)
        self.contextembed1 = EmbedFC(n_cfeat, 2 * n_feat)
        self.contextembed2 = EmbedFC(n_cfeat, 1 * n_feat)
        self.up0 = nn.Sequential(nn.ConvTranspose2d(2 * n_feat, 2 * n_feat, height // 4, height // 4),
                                 nn.GroupNorm(8, 2 * n_feat), nn.ReLU())
        self.up1 = UnetUp(4 * n_feat, n_feat)
        self.up2 = UnetUp(2 * n_feat, n_feat)
        self.out = nn.Sequential(nn.Conv2d(2 * n_feat, n_feat, 3, 1, 1), nn.GroupNorm(8, n_feat), nn.ReLU(),
                                 nn.Conv2d(n_feat, in_channels, 3, 1, 1))

    @property
    def config(self) -> UnetConfig:
        return UnetConfig(self.in_channels, self.n_feat, self.n_cfeat, self.h)

    def forward(self, x, t, c=None):
        """x [N,C,H,W], t: i/T as [N,1], [N] or [1,1,1,1] (broadcast), c [N,n_cfeat] or None (zeros)."""
        x = self.init_conv(x)                        # [N, F, H, W]
        down1 = self.down1(x)                        # [N, F, H/2, W/2]
        down2 = self.down2(down1)                    # [N, 2F, H/4, W/4]
        hidden = self.to_vec(down2)                  # [N, 2F, 1, 1]
        if c is None:
            c = torch.zeros(x.shape[0], self.n_cfeat, device=x.device, dtype=x.dtype)
        cemb1 = self.contextembed1(c).view(-1, self.n_feat * 2, 1, 1)
        temb1 = self.timeembed1(t).view(-1, self.n_feat * 2, 1, 1)
        cemb2 = self.contextembed2(c).view(-1, self.n_feat, 1, 1)
        temb2 = self.timeembed2(t).view(-1, self.n_feat, 1, 1)
        up1 = self.up0(hidden)                       # [N, 2F, H/4, W/4]
        up2 = self.up1(cemb1 * up1 + temb1, down2)   # [N, F, H/2, W/2]
        up3 = self.up2(cemb2 * up2 + temb2, down1)   # [N, F, H, W]
        return self.out(torch.cat((up3, x), 1))      # [N, C, H, W]
