"""Project 5A's functions in signature variants that public implementations use, written for a GPU as the
course ran (.cuda(), "cuda", .half() hard-coded), which check-impl must run unchanged on a CPU:

- forward takes alphas_cumprod as an argument; iterative_denoise takes stage_1 and alphas_cumprod, has no
  i_start (its loop starts at 0) and no display, and returns (clean, intermediates);
- the UNet gets t as a 0-d CUDA tensor and one batched call for CFG; add_variance gets the step's index;
- iterative_denoise_cfg names the unconditional embeddings uncond_embeds and returns HWC in [0, 1];
- inpaint draws on "cuda" and returns CHW; visual_anagrams takes both prompts as a tuple in prompt_embeds and
  returns (upright, flipped); make_hybrids reads them as a dict and names its filter ksize.
"""

import torch
import torch.nn.functional as F


def forward(im, t, alphas_cumprod):
    abar = alphas_cumprod[t].cuda().half()
    return abar.sqrt() * im.cuda().half() + (1 - abar).sqrt() * torch.randn_like(im).cuda().half()


def ddpm_step(x, t, prev_t, eps, variance, index, alphas_cumprod):
    abar, abar_prev = alphas_cumprod[t], alphas_cumprod[prev_t]
    alpha = abar / abar_prev
    x0 = (x - (1 - abar).sqrt() * eps) / abar.sqrt()
    mean = abar_prev.sqrt() * (1 - alpha) / (1 - abar) * x0 + alpha.sqrt() * (1 - abar_prev) / (1 - abar) * x
    return add_variance(variance, index, mean)


def unet(stage_1, x, t, embeds):
    t = torch.tensor(t).cuda()
    return stage_1.unet(x.half().cuda(), t, encoder_hidden_states=embeds.half().cuda(), return_dict=False)[0]


def guided(stage_1, x, t, cond, uncond, scale):
    """CFG from one batched UNet call: eps_u + scale (eps_c - eps_u), and the conditional variance."""
    out = unet(stage_1, torch.cat([x, x]), t, torch.cat([cond, uncond]))
    eps, variance = out.split(x.shape[1], dim=1)
    return eps[1:] + scale * (eps[:1] - eps[1:]), variance[:1]


def iterative_denoise(im_noisy, prompt_embeds, timesteps, stage_1, alphas_cumprod):
    x, intermediates = im_noisy.half().cuda(), []
    with torch.no_grad():
        for i in range(len(timesteps) - 1):
            eps, variance = unet(stage_1, x, timesteps[i], prompt_embeds).split(x.shape[1], dim=1)
            x = ddpm_step(x, timesteps[i], timesteps[i + 1], eps, variance, i, alphas_cumprod)
            intermediates.append(x.cpu().numpy())
    return x.cpu().numpy(), intermediates


def cfg_loop(x, i_start, cond, uncond, timesteps, scale, combine=None):
    with torch.no_grad():
        for i in range(i_start, len(timesteps) - 1):
            t = timesteps[i]
            eps, variance = (combine or guided)(stage_1, x, t, cond, uncond, scale)
            x = ddpm_step(x, t, timesteps[i + 1], eps, variance, t, alphas_cumprod)
    return x


def iterative_denoise_cfg(im_noisy, i_start, prompt_embeds, uncond_embeds, timesteps, scale=7):
    x = cfg_loop(im_noisy.cuda().half(), i_start, prompt_embeds, uncond_embeds, timesteps, scale)
    return (x[0].permute(1, 2, 0).float().cpu().numpy() / 2 + 0.5).clip(0, 1)


def inpaint(original_image, mask, prompt_embeds, uncond_prompt_embeds, timesteps, scale=7):
    x = torch.randn_like(original_image, device="cuda").half()
    original, mask = original_image.to("cuda", torch.float16), mask.to(device="cuda", dtype=torch.float16)
    with torch.no_grad():
        for i in range(len(timesteps) - 1):
            t, prev_t = timesteps[i], timesteps[i + 1]
            eps, variance = guided(stage_1, x, t, prompt_embeds, uncond_prompt_embeds, scale)
            x = ddpm_step(x, t, prev_t, eps, variance, t, alphas_cumprod)
            abar = alphas_cumprod[prev_t].to("cuda")
            x = mask * x + (1 - mask) * (abar.sqrt() * original + (1 - abar).sqrt() * torch.randn_like(x))
    return x[0]


def visual_anagrams(image, i_start, prompt_embeds, uncond_embeds, timesteps, scale=7):
    p1, p2 = prompt_embeds

    def both_ways(stage_1, x, t, cond, uncond, scale):
        eps_1, var_1 = guided(stage_1, x, t, p1, uncond, scale)
        eps_2, var_2 = guided(stage_1, x.flip(2), t, p2, uncond, scale)
        return (eps_1 + eps_2.flip(2)) / 2, (var_1 + var_2.flip(2)) / 2

    x = cfg_loop(image.cuda(), i_start, None, uncond_embeds, timesteps, scale, both_ways)
    return x.cpu().numpy(), x.flip(2).cpu().numpy()


def blur(x, ksize, sigma):
    r = torch.arange(ksize, device=x.device, dtype=x.dtype) - (ksize - 1) / 2
    g = torch.exp(-r ** 2 / (2 * sigma ** 2))
    g = g / g.sum()
    k = (g[:, None] * g[None, :]).expand(x.shape[1], 1, ksize, ksize)
    return F.conv2d(F.pad(x, [ksize // 2] * 4, mode="reflect"), k, groups=x.shape[1])


def make_hybrids(image, i_start, prompt_embeds, uncond_prompt_embeds, timesteps, scale=7, display=True, ksize=33,
                 sigma=2.0):
    def bands(stage_1, x, t, cond, uncond, scale):
        eps_far, var_far = guided(stage_1, x, t, prompt_embeds["p1"], uncond, scale)
        eps_near, var_near = guided(stage_1, x, t, prompt_embeds["p2"], uncond, scale)
        return blur(eps_far, ksize, sigma) + eps_near - blur(eps_near, ksize, sigma), (var_far + var_near) / 2

    return cfg_loop(image.half().cuda(), i_start, None, uncond_prompt_embeds, timesteps, scale, bands).cpu().numpy()
