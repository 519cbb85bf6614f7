"""The course's UNet for 28x28 MNIST, exactly: unconditional, time-conditioned (DDPM adds the time
embedding, flow matching multiplies by it), class-conditioned.

Shapes for hidden width D: 28x28xD -> 14x14xD -> 7x7x2D -> (flatten) 1x1x2D -> (unflatten) 7x7x2D
-> 14x14xD -> 28x28xD -> 1 channel, with skip connections concatenated on the way up.
"""

from __future__ import annotations

import torch
from torch import nn


def _bn_gelu(conv: nn.Module, ch: int) -> nn.Sequential:
    return nn.Sequential(conv, nn.BatchNorm2d(ch), nn.GELU())


def Conv(cin: int, cout: int) -> nn.Sequential:
    """3x3 conv, stride 1, same size; BN; GELU."""
    return _bn_gelu(nn.Conv2d(cin, cout, 3, 1, 1), cout)


def DownConv(cin: int, cout: int) -> nn.Sequential:
    """3x3 conv, stride 2: H -> H/2; BN; GELU."""
    return _bn_gelu(nn.Conv2d(cin, cout, 3, 2, 1), cout)


def UpConv(cin: int, cout: int) -> nn.Sequential:
    """4x4 transposed conv, stride 2: H -> 2H; BN; GELU."""
    return _bn_gelu(nn.ConvTranspose2d(cin, cout, 4, 2, 1), cout)


def Flatten() -> nn.Sequential:
    """7x7 average pool to 1x1; GELU."""
    return nn.Sequential(nn.AvgPool2d(7), nn.GELU())


def Unflatten(ch: int) -> nn.Sequential:
    """7x7 transposed conv, stride 7: 1x1 -> 7x7; BN; GELU."""
    return _bn_gelu(nn.ConvTranspose2d(ch, ch, 7, 7, 0), ch)


def ConvBlock(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(Conv(cin, cout), Conv(cout, cout))


def DownBlock(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(DownConv(cin, cout), ConvBlock(cout, cout))


def UpBlock(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(UpConv(cin, cout), ConvBlock(cout, cout))


def FCBlock(cin: int, cout: int) -> nn.Sequential:
    """Linear, GELU, Linear: embeds t/T or the one-hot class."""
    return nn.Sequential(nn.Linear(cin, cout), nn.GELU(), nn.Linear(cout, cout))


class UnconditionalUNet(nn.Module):
    """The single-step denoiser D(z) ~ x of B1 (trained on z = x + sigma eps)."""

    def __init__(self, in_channels: int = 1, num_hiddens: int = 128):
        super().__init__()
        D = num_hiddens
        self.conv_in = ConvBlock(in_channels, D)
        self.down1 = DownBlock(D, D)
        self.down2 = DownBlock(D, 2 * D)
        self.flatten = Flatten()
        self.unflatten = Unflatten(2 * D)
        self.up1 = UpBlock(4 * D, D)
        self.up2 = UpBlock(2 * D, D)
        self.conv_mid = ConvBlock(2 * D, D)
        self.conv_out = nn.Conv2d(D, in_channels, 3, 1, 1)

    def encode(self, x: torch.Tensor):
        x0 = self.conv_in(x)
        x1 = self.down1(x0)
        x2 = self.down2(x1)
        return x0, x1, x2, self.unflatten(self.flatten(x2))

    def decode(self, x0, x1, x2, u, scale1=None, shift1=None, scale2=None, shift2=None) -> torch.Tensor:
        if scale1 is not None:
            u = u * scale1
        if shift1 is not None:
            u = u + shift1
        y = self.up1(torch.cat([u, x2], 1))
        if scale2 is not None:
            y = y * scale2
        if shift2 is not None:
            y = y + shift2
        y = self.up2(torch.cat([y, x1], 1))
        return self.conv_out(self.conv_mid(torch.cat([y, x0], 1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(*self.encode(x))


class TimeConditionalUNet(UnconditionalUNet):
    """eps(x_t, t) or the velocity u(x_t, t): t enters through t1 = FCBlock(1, 2D)(t) at the unflatten and
    t2 = FCBlock(1, D)(t) after up1. ``time_conditioning`` "add" (DDPM): unflatten + t1, up1 + t2;
    "multiply" (flow matching): unflatten * t1, up1 * t2."""

    def __init__(self, in_channels: int = 1, num_hiddens: int = 64, time_conditioning: str = "add"):
        super().__init__(in_channels, num_hiddens)
        if time_conditioning not in ("add", "multiply"):
            raise ValueError(f"time_conditioning {time_conditioning!r}: pass 'add' (DDPM) or 'multiply' (flow matching)")
        self.time_conditioning = time_conditioning
        self.fc1_t = FCBlock(1, 2 * num_hiddens)
        self.fc2_t = FCBlock(1, num_hiddens)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """t: (B,) normalised time in [0, 1] (DDPM: t/T)."""
        t = t.reshape(-1, 1).to(x.dtype)
        t1, t2 = _hw(self.fc1_t(t)), _hw(self.fc2_t(t))
        if self.time_conditioning == "multiply":
            return self.decode(*self.encode(x), scale1=t1, scale2=t2)
        return self.decode(*self.encode(x), shift1=t1, shift2=t2)


class ClassConditionalUNet(UnconditionalUNet):
    """eps(x_t, t, c) or the velocity u(x_t, t, c) (the course's two versions wire it alike): unflatten =
    c1 * unflatten + t1, up1 = c2 * up1 + t2; c is a one-hot vector, all zeros for the unconditional
    (null) class."""

    def __init__(self, in_channels: int = 1, num_hiddens: int = 64, num_classes: int = 10):
        super().__init__(in_channels, num_hiddens)
        self.num_classes = num_classes
        self.fc1_t = FCBlock(1, 2 * num_hiddens)
        self.fc2_t = FCBlock(1, num_hiddens)
        self.fc1_c = FCBlock(num_classes, 2 * num_hiddens)
        self.fc2_c = FCBlock(num_classes, num_hiddens)

    def forward(self, x: torch.Tensor, t: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """t: (B,) t/T; c: (B, num_classes) one-hot (zeros = unconditional)."""
        t = t.reshape(-1, 1).to(x.dtype)
        c = c.to(x.dtype)
        return self.decode(*self.encode(x), scale1=_hw(self.fc1_c(c)), shift1=_hw(self.fc1_t(t)),
                           scale2=_hw(self.fc2_c(c)), shift2=_hw(self.fc2_t(t)))


def _hw(v: torch.Tensor) -> torch.Tensor:
    return v[:, :, None, None]
