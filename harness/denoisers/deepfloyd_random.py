"""deepfloyd-random: DeepFloyd IF's architecture at its real size (IF-I-XL 4.3B, IF-II-L 1.2B) with random weights.

It measures what the sampler costs on the real model (UNet calls, time, GPU memory) where the gated
weights cannot be had; its images mean nothing. The two UNets are built on the meta device, given
storage on the target device (``to_empty``) and filled there from one seeded generator with tiny-if's
scheme (`tiny_if.init_random_`), in fp16 on CUDA, so building takes seconds (9 s on an H200, imports
included) and nothing passes through the CPU. ``UNet2DConditionModel`` has no buffers, so ``to_empty``
leaves nothing uninitialised (its time-step frequencies are computed in ``forward``). Random weights
diverge in a strided loop, so, as for tiny-if, clean estimates are clamped to [-1, 1] (``x0_clip = 1.0``).
``shrink`` divides the widths through the same code (`scaled`), so CPU tests build and run it small.

T5-XXL is not run: prompt embeddings are seeded N(0, 1) draws of T5's output shape (77, 4096), one per
prompt text (`RandomPrompts`). In real use T5 runs once per prompt and its embeddings are cached
(`PromptCache`), so it is no part of the sampler's cost.

Configs: IF-I-XL's as published (``unet/config.json``): 4.305B parameters. IF-II-L's as diffusers'
``scripts/convert_if.py`` builds it, which sets ``only_cross_attention=True`` for stage II: 1.184B
parameters (published: 1.2B; with self-attention it would be 1.243B).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import torch

from harness.denoisers.deepfloyd import IFBackend, if_backend
from harness.denoisers.tiny_if import SEED, init_random_, pipelines
from harness.errors import BackendUnavailable
from harness.seeding import derive_seed

if TYPE_CHECKING:
    from diffusers import UNet2DConditionModel

NAME = "deepfloyd-random"
IF_COMMON = dict(
    out_channels=6, attention_head_dim=64, norm_num_groups=32, encoder_hid_dim=4096, encoder_hid_dim_type="text_proj",
    addition_embed_type="text", addition_embed_type_num_heads=64, resnet_time_scale_shift="scale_shift",
    act_fn="gelu", cross_attention_norm="group_norm", mid_block_type="UNetMidBlock2DSimpleCrossAttn",
)
STAGE1_XL = dict(  # DeepFloyd/IF-I-XL-v1.0 unet/config.json
    IF_COMMON, sample_size=64, in_channels=3, layers_per_block=3, block_out_channels=(704, 1408, 2112, 2816),
    down_block_types=("ResnetDownsampleBlock2D",) + ("SimpleCrossAttnDownBlock2D",) * 3,
    up_block_types=("SimpleCrossAttnUpBlock2D",) * 3 + ("ResnetUpsampleBlock2D",),
    cross_attention_dim=2816, class_embed_type=None, only_cross_attention=False,
)
STAGE2_L = dict(  # DeepFloyd/IF-II-L-v1.0 as convert_if.py builds it: 6 channels in (x_t and the upsampled
    # 64x64 image), the noise level as a timestep class embedding, 1/sqrt(2) residual scaling, no self-attention
    IF_COMMON, sample_size=256, in_channels=6, layers_per_block=(2, 2, 3, 5, 5),
    block_out_channels=(160, 320, 640, 960, 1280),
    down_block_types=("ResnetDownsampleBlock2D",) * 3 + ("SimpleCrossAttnDownBlock2D",) * 2,
    up_block_types=("SimpleCrossAttnUpBlock2D",) * 2 + ("ResnetUpsampleBlock2D",) * 3,
    cross_attention_dim=1280, class_embed_type="timestep", only_cross_attention=True,
    mid_block_scale_factor=1.4142271248762552, resnet_out_scale_factor=1.4142271248762552,
    resnet_skip_time_act=True, time_embedding_dim=1280, time_embedding_act_fn="gelu",
)
# Widths divided by `shrink`, T5's 4096 (encoder_hid_dim) too: its 4096x4096 attention pooling would
# otherwise be most of a shrunk model's weights and work. Head counts are not widths: they stay. Nor does
# cross_attention_dim (the text's width inside the attention layers, which meet only its 77 tokens):
# diffusers fixes that GroupNorm at 32 groups, which a shrunk 2816 or 1280 would not divide into.
WIDTHS = ("attention_head_dim", "norm_num_groups", "time_embedding_dim", "encoder_hid_dim")
SHRINKS = (1, 2, 4, 8, 16, 32)  # the divisors of 32 groups (and of 64-wide heads, 704 and 160 channels)
TOKENS = 77  # T5 tokens per prompt
MIN_FREE_GIB = 12  # fp16 weights 8.6 + 2.4 GB, and the activations of a batch
UNAVAILABLE = ("deepfloyd-random builds IF-I-XL (4.3B) and IF-II-L (1.2B) at their real size: needs --device cuda "
               f"with >= {MIN_FREE_GIB} GiB free; ")


def scaled(config: dict, shrink: int) -> dict:
    """``config`` with its widths divided by ``shrink`` (1: unchanged): block channels, head width, group
    count, time-embedding and text-embedding widths. Heads per layer, channels per group, the
    cross-attention width and the layout (blocks, layers, image sizes) stay the real model's."""
    if shrink not in SHRINKS:
        raise ValueError(f"shrink must be one of {SHRINKS}, not {shrink}")
    out = dict(config, block_out_channels=tuple(c // shrink for c in config["block_out_channels"]))
    return out | {k: config[k] // shrink for k in WIDTHS if config.get(k) is not None}


def meta_unet(config: dict) -> UNet2DConditionModel:
    """The UNet with no storage (meta device): its parameter shapes and count, at no cost."""
    from diffusers import UNet2DConditionModel

    with torch.device("meta"):
        return UNet2DConditionModel(**config)


def random_unet(config: dict, gen: torch.Generator, dtype: torch.dtype) -> UNet2DConditionModel:
    """The UNet with storage on the generator's device in ``dtype``, every parameter drawn there from ``gen``."""
    unet = meta_unet(config)
    if dtype == torch.float16:
        unet.half()  # on meta, before any storage exists (diffusers' .to(dtype) would warn)
    return init_random_(unet.to_empty(device=gen.device), gen, out_scale=0.1).eval()


class RandomPrompts:
    """`PromptCache`'s interface without T5: prompt text -> a (77, dim) N(0, 1) draw seeded by the text
    (dim: T5-XXL's 4096 at the real size); None is the null prompt "", which has its own draw."""

    def __init__(self, dim: int):
        self.dim = dim

    def get(self, prompts: Sequence[str | None]) -> torch.Tensor:
        gens = [torch.Generator().manual_seed(derive_seed(SEED, f"{NAME}/prompt/{p or ''}")) for p in prompts]
        return torch.stack([torch.randn(TOKENS, self.dim, generator=g) for g in gens])


def check_room(device: torch.device) -> None:
    """Raise BackendUnavailable, saying why, unless ``device`` is a CUDA device with room for the real model."""
    if not torch.cuda.is_available():
        raise BackendUnavailable(UNAVAILABLE + "this machine has no CUDA")
    if device.type != "cuda":
        raise BackendUnavailable(UNAVAILABLE + f"got --device {device}")
    free = torch.cuda.mem_get_info(device)[0] / 2**30
    if free < MIN_FREE_GIB:
        raise BackendUnavailable(UNAVAILABLE + f"{device} has {free:.1f} GiB free")


def load_deepfloyd_random(device: str | torch.device = "cpu", shrink: int = 1) -> IFBackend:
    """IF stage 1 and 2 with random weights as an `IFBackend` (the same class and code path as `deepfloyd`).

    shrink 1 is the real size and needs CUDA (BackendUnavailable otherwise); a larger shrink divides the
    widths (`scaled`) and runs anywhere, for tests. fp16 on CUDA, fp32 on CPU.
    """
    device = torch.device(device)
    if shrink == 1:
        check_room(device)
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    gen = torch.Generator(device=device).manual_seed(SEED)
    unet1 = random_unet(scaled(STAGE1_XL, shrink), gen, dtype)
    unet2 = random_unet(scaled(STAGE2_L, shrink), gen, dtype)
    stage1, stage2 = pipelines(unet1, unet2)
    return if_backend(NAME, stage1, stage2, RandomPrompts(unet1.config.encoder_hid_dim), device, x0_clip=1.0)
