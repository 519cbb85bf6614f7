"""tiny-if: DeepFloyd IF's architecture (diffusers and transformers classes) with small random weights.

Built deterministically offline, saved with ``save_pretrained`` into the cache, and loaded by
`load_deepfloyd` exactly as the hub weights are. Weights are drawn from one explicit generator:
matrices N(0, 1/fan_in), biases 0, norm scales 1, and the UNets' output convolutions scaled by 0.1 so
eps and the variance value v stay near the unit range. Random weights still make a strided loop
diverge (probe: +-600), so the folder declares ``x0_clip = 1.0`` in ``stage1/harness.json``: every step
clamps the clean estimate to [-1, 1] (thresholding, as IF's own pipelines do).
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from harness.atomic import build_dir_once
from harness.denoisers.deepfloyd import NO_EXTRAS
from harness.paths import cache_dir

if TYPE_CHECKING:
    from diffusers import IFPipeline, IFSuperResolutionPipeline

SEED = 20241124
T5 = dict(d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4, relative_attention_num_buckets=8,
          dropout_rate=0.0, feed_forward_proj="relu")
UNET_COMMON = dict(
    layers_per_block=1, norm_num_groups=8, cross_attention_dim=32, encoder_hid_dim=T5["d_model"],
    attention_head_dim=8, addition_embed_type="text", addition_embed_type_num_heads=2,
    cross_attention_norm="group_norm", resnet_time_scale_shift="scale_shift", act_fn="gelu",
)
STAGE1_UNET = dict(
    UNET_COMMON, sample_size=64, in_channels=3, out_channels=6, block_out_channels=(8, 16, 24, 32),
    down_block_types=("ResnetDownsampleBlock2D",) + ("SimpleCrossAttnDownBlock2D",) * 3,
    mid_block_type="UNetMidBlock2DSimpleCrossAttn",
    up_block_types=("SimpleCrossAttnUpBlock2D",) * 3 + ("ResnetUpsampleBlock2D",),
)
STAGE2_UNET = dict(  # 64 -> 128 on the twin (IF-II gives 256); attention only at 16x16 to stay cheap;
    # the noise level enters as a timestep class embedding, as in IF-II
    UNET_COMMON, sample_size=128, in_channels=6, out_channels=6, block_out_channels=(8, 8, 16, 24),
    down_block_types=("ResnetDownsampleBlock2D",) * 3 + ("SimpleCrossAttnDownBlock2D",),
    mid_block_type="UNetMidBlock2DSimpleCrossAttn",
    up_block_types=("SimpleCrossAttnUpBlock2D",) + ("ResnetUpsampleBlock2D",) * 3,
    class_embed_type="timestep",
)
# DeepFloyd IF's scheduler configs (stage 2: sample_max_value 1.0).
SCHEDULER = dict(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", variance_type="learned_range",
                 thresholding=True, dynamic_thresholding_ratio=0.95, prediction_type="epsilon", clip_sample=False)
VOCAB_SIZE = 256  # an upper bound (hard_vocab_limit=False): the corpus is small


def _recipe_hash() -> str:
    import diffusers
    import transformers

    corpus = files("harness.data").joinpath("tokenizer_corpus.txt").read_bytes()
    text = json.dumps([SEED, T5, STAGE1_UNET, STAGE2_UNET, SCHEDULER, VOCAB_SIZE, diffusers.__version__,
                       transformers.__version__, hashlib.sha256(corpus).hexdigest()], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def tiny_if_path() -> Path:
    """The twin's folder (``stage1/``, ``stage2/``), built on first use; safe under parallel workers."""
    return build_dir_once(cache_dir() / "tiny-if" / _recipe_hash(), build)


def _tokenizer():
    """A T5 tokenizer from a sentencepiece unigram model trained on the shipped corpus (no hub)."""
    import sentencepiece as spm
    from transformers import T5TokenizerFast

    corpus = files("harness.data").joinpath("tokenizer_corpus.txt").read_text()
    with tempfile.TemporaryDirectory() as tmp:
        prefix = str(Path(tmp) / "spm")
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(corpus.splitlines()), model_prefix=prefix, vocab_size=VOCAB_SIZE,
            model_type="unigram", hard_vocab_limit=False, pad_id=0, eos_id=1, unk_id=2, bos_id=-1, num_threads=1, minloglevel=2,
        )
        sp = spm.SentencePieceProcessor(model_file=prefix + ".model")
    vocab = [(sp.id_to_piece(i), sp.get_score(i)) for i in range(sp.get_piece_size())]
    return T5TokenizerFast(vocab=vocab, extra_ids=0, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")


def init_random_(model: torch.nn.Module, gen: torch.Generator, out_scale: float = 1.0) -> torch.nn.Module:
    """Overwrite every parameter from ``gen`` in name order: N(0, 1/fan_in) matrices, 0 biases, 1 scales,
    and ``conv_out`` times ``out_scale``. Each draw is made on the generator's device in the parameter's
    dtype, so a CUDA generator fills fp16 weights in place (deepfloyd-random's billions of parameters
    never pass through the CPU); a CPU generator and float32 parameters give tiny-if's draws unchanged."""
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            if p.dim() >= 2:
                p.copy_(torch.randn(p.shape, generator=gen, device=gen.device, dtype=p.dtype) / p[0].numel() ** 0.5)
            else:
                p.fill_(0.0 if name.endswith("bias") else 1.0)
            if name.startswith("conv_out."):
                p.mul_(out_scale)
    return model


def pipelines(unet1, unet2, tokenizer=None, text_encoder=None) -> tuple[IFPipeline, IFSuperResolutionPipeline]:
    """IF's two diffusers pipelines around the given UNets, with IF's schedulers and no safety extras."""
    from diffusers import DDPMScheduler, IFPipeline, IFSuperResolutionPipeline

    stage1 = IFPipeline(tokenizer=tokenizer, text_encoder=text_encoder, unet=unet1,
                        scheduler=DDPMScheduler(**SCHEDULER, sample_max_value=1.5), **NO_EXTRAS)
    stage2 = IFSuperResolutionPipeline(
        tokenizer=tokenizer, text_encoder=text_encoder, unet=unet2,
        scheduler=DDPMScheduler(**SCHEDULER, sample_max_value=1.0),
        image_noising_scheduler=DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2"), **NO_EXTRAS)
    return stage1, stage2


def build(folder: Path) -> None:
    """Build and save_pretrained the twin's two pipelines into ``folder`` (deterministic bytes)."""
    from diffusers import UNet2DConditionModel
    from transformers import T5Config, T5EncoderModel

    gen = torch.Generator().manual_seed(SEED)
    tokenizer = _tokenizer()
    with torch.random.fork_rng(devices=[]):  # constructors draw from the global RNG; we overwrite it all
        text_encoder = T5EncoderModel(T5Config(vocab_size=len(tokenizer), pad_token_id=0, eos_token_id=1, **T5))
        unet1 = UNet2DConditionModel(**STAGE1_UNET)
        unet2 = UNet2DConditionModel(**STAGE2_UNET)
    init_random_(text_encoder, gen)
    init_random_(unet1, gen, out_scale=0.1)
    init_random_(unet2, gen, out_scale=0.1)
    stage1, stage2 = pipelines(unet1, unet2, tokenizer, text_encoder)
    stage1.save_pretrained(folder / "stage1")
    stage2.save_pretrained(folder / "stage2")
    (folder / "stage1" / "harness.json").write_text(json.dumps(
        {"x0_clip": 1.0, "note": "random weights: clean estimates clamped to [-1, 1] so loops stay finite"}, indent=1))

