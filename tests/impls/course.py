"""Project 5A's functions as a student writes them in the course notebook's skeleton, from the writeups'
equations, without the harness: the notebook provides stage_1, alphas_cumprod, add_variance and device.

forward:    x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps
one step:   x0 = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t),
            x_t' = sqrt(abar_t') beta_t / (1 - abar_t) x0 + sqrt(alpha_t) (1 - abar_t') / (1 - abar_t) x_t + v_sigma
CFG:        eps = eps_u + gamma (eps_c - eps_u)
inpainting: x_t <- m x_t + (1 - m) forward(x_orig, t)
anagrams:   eps = (eps_1(x_t) + flip(eps_2(flip(x_t)))) / 2
hybrids:    eps = f_low(eps_1) + f_high(eps_2), a Gaussian of kernel 33, sigma 2
"""

import math

import torch
import torch.nn.functional as F


def forward(im, t):
    with torch.no_grad():
        alpha_cumprod = alphas_cumprod[t]
        noise = torch.randn_like(im)
        return torch.sqrt(alpha_cumprod) * im + torch.sqrt(1 - alpha_cumprod) * noise


def step(image, t, prev_t, noise_est, predicted_variance):
    alpha_cumprod = alphas_cumprod[t]
    alpha_cumprod_prev = alphas_cumprod[prev_t]
    alpha = alpha_cumprod / alpha_cumprod_prev
    beta = 1 - alpha
    x0 = (image - torch.sqrt(1 - alpha_cumprod) * noise_est) / torch.sqrt(alpha_cumprod)
    pred_prev_image = (torch.sqrt(alpha_cumprod_prev) * beta / (1 - alpha_cumprod) * x0
                       + torch.sqrt(alpha) * (1 - alpha_cumprod_prev) / (1 - alpha_cumprod) * image)
    return add_variance(predicted_variance, t, pred_prev_image)


def estimate(image, t, prompt_embeds):
    model_output = stage_1.unet(image, t, encoder_hidden_states=prompt_embeds, return_dict=False)[0]
    return torch.split(model_output, image.shape[1], dim=1)


def cfg_estimate(image, t, prompt_embeds, uncond_prompt_embeds, scale):
    noise_est, predicted_variance = estimate(image, t, prompt_embeds)
    uncond_noise_est, _ = estimate(image, t, uncond_prompt_embeds)
    return uncond_noise_est + scale * (noise_est - uncond_noise_est), predicted_variance


def iterative_denoise(im_noisy, i_start, prompt_embeds, timesteps, display=True):
    image = im_noisy
    with torch.no_grad():
        for i in range(i_start, len(timesteps) - 1):
            t, prev_t = timesteps[i], timesteps[i + 1]
            noise_est, predicted_variance = estimate(image, t, prompt_embeds)
            image = step(image, t, prev_t, noise_est, predicted_variance)
        clean = image.cpu().detach().numpy()
    return clean


def iterative_denoise_cfg(im_noisy, i_start, prompt_embeds, uncond_prompt_embeds, timesteps, scale=7, display=True):
    image = im_noisy
    with torch.no_grad():
        for i in range(i_start, len(timesteps) - 1):
            t, prev_t = timesteps[i], timesteps[i + 1]
            noise_est, predicted_variance = cfg_estimate(image, t, prompt_embeds, uncond_prompt_embeds, scale)
            image = step(image, t, prev_t, noise_est, predicted_variance)
        clean = image.cpu().detach().numpy()
    return clean


def inpaint(original_image, mask, prompt_embeds, uncond_prompt_embeds, timesteps, scale=7, display=True):
    image = torch.randn_like(original_image).to(device).half()
    with torch.no_grad():
        for i in range(len(timesteps) - 1):
            t, prev_t = timesteps[i], timesteps[i + 1]
            noise_est, predicted_variance = cfg_estimate(image, t, prompt_embeds, uncond_prompt_embeds, scale)
            image = step(image, t, prev_t, noise_est, predicted_variance)
            image = mask * image + (1 - mask) * forward(original_image, prev_t)
        clean = image.cpu().detach().numpy()
    return clean


def flip_estimate(image, t, prompt1_embeds, prompt2_embeds, uncond_prompt_embeds, scale):
    eps_1, var_1 = cfg_estimate(image, t, prompt1_embeds, uncond_prompt_embeds, scale)
    eps_2, var_2 = cfg_estimate(torch.flip(image, dims=[2]), t, prompt2_embeds, uncond_prompt_embeds, scale)
    return (eps_1 + torch.flip(eps_2, dims=[2])) / 2, (var_1 + torch.flip(var_2, dims=[2])) / 2


def make_flip_illusion(image, i_start, prompt1_embeds, prompt2_embeds, uncond_prompt_embeds, timesteps, scale=7,
                       display=True):
    with torch.no_grad():
        for i in range(i_start, len(timesteps) - 1):
            t, prev_t = timesteps[i], timesteps[i + 1]
            noise_est, predicted_variance = flip_estimate(image, t, prompt1_embeds, prompt2_embeds,
                                                          uncond_prompt_embeds, scale)
            image = step(image, t, prev_t, noise_est, predicted_variance)
        clean = image.cpu().detach().numpy()
    return clean


def gaussian_blur(x, kernel_size, sigma):
    """torchvision's gaussian_blur: a separable normalised Gaussian, reflect padding."""
    half = (kernel_size - 1) / 2
    w = torch.exp(-torch.linspace(-half, half, kernel_size) ** 2 / (2 * sigma ** 2))
    w = (w / w.sum()).to(x.device, x.dtype)
    c, pad = x.shape[1], kernel_size // 2
    y = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    y = F.conv2d(y, w.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(y, w.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def make_hybrids(image, i_start, prompt1_embeds, prompt2_embeds, uncond_prompt_embeds, timesteps, scale=7,
                 display=True, kernel_size=33, sigma=2):
    with torch.no_grad():
        for i in range(i_start, len(timesteps) - 1):
            t, prev_t = timesteps[i], timesteps[i + 1]
            eps_1, var_1 = cfg_estimate(image, t, prompt1_embeds, uncond_prompt_embeds, scale)
            eps_2, var_2 = cfg_estimate(image, t, prompt2_embeds, uncond_prompt_embeds, scale)
            noise_est = gaussian_blur(eps_1, kernel_size, sigma) + eps_2 - gaussian_blur(eps_2, kernel_size, sigma)
            image = step(image, t, prev_t, noise_est, (var_1 + var_2) / 2)
        clean = image.cpu().detach().numpy()
    return clean
