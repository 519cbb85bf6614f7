"""The course's functions (course.py) with the forward process missing its square roots."""

from pathlib import Path

exec(Path(__file__).with_name("course.py").read_text())


def forward(im, t):
    alpha_cumprod = alphas_cumprod[t]
    return alpha_cumprod * im + (1 - alpha_cumprod) * torch.randn_like(im)
