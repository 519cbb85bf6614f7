"""Signature variants of the functions that get the notebook's objects as arguments: alphas_cumprod and
stage_1 passed in, add_variance called with stage_1, the two prompts as prompt_embeds_1/prompt_embeds_2
(anagrams) and prompt_embeds1/prompt_embeds2 (hybrids), uncond_embeds, and no display."""

from pathlib import Path

exec(Path(__file__).with_name("course.py").read_text())
course_hybrids = make_hybrids


def step(image, t, prev_t, noise_est, predicted_variance, alphas_cumprod=alphas_cumprod):
    abar, abar_prev = alphas_cumprod[t], alphas_cumprod[prev_t]
    x0 = (image - (1 - abar).sqrt() * noise_est) / abar.sqrt()
    beta = 1 - abar / abar_prev
    mean = abar_prev.sqrt() * beta / (1 - abar) * x0 + (1 - beta).sqrt() * (1 - abar_prev) / (1 - abar) * image
    return add_variance(predicted_variance, t, mean, stage_1)


def make_flip_illusion(image, i_start, prompt_embeds_1, prompt_embeds_2, timesteps, alphas_cumprod, stage_1,
                       uncond_prompt_embeds, scale=7):
    with torch.no_grad():
        for i in range(i_start, len(timesteps) - 1):
            t, prev_t = timesteps[i], timesteps[i + 1]
            eps_1, var_1 = cfg_estimate(image, t, prompt_embeds_1, uncond_prompt_embeds, scale)
            eps_2, var_2 = cfg_estimate(image.flip(2), t, prompt_embeds_2, uncond_prompt_embeds, scale)
            image = step(image, t, prev_t, (eps_1 + eps_2.flip(2)) / 2, (var_1 + var_2.flip(2)) / 2, alphas_cumprod)
    return image.cpu().numpy()


def make_hybrids(image, i_start, prompt_embeds1, prompt_embeds2, uncond_embeds, timesteps, scale=7, kernel_size=33,
                 sigma=2):
    return course_hybrids(image, i_start, prompt_embeds1, prompt_embeds2, uncond_embeds, timesteps, scale, False,
                          kernel_size, sigma)

