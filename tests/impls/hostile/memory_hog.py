"""Hostile: forward asks for 50 GB (the sandbox's memory cap refuses it)."""

import torch


def forward(im, t):
    return torch.ones(50 * 2**30 // 4)
