"""The course's functions (course.py) drawing their noise in another valid order: forward discards a first
draw, inpainting re-noises the known region before the step's variance is drawn."""

from pathlib import Path

exec(Path(__file__).with_name("course.py").read_text())


def forward(im, t):
    torch.randn_like(im)
    alpha_cumprod = alphas_cumprod[t]
    return torch.sqrt(alpha_cumprod) * im + torch.sqrt(1 - alpha_cumprod) * torch.randn_like(im)


def inpaint(original_image, mask, prompt_embeds, uncond_prompt_embeds, timesteps, scale=7, display=True):
    image = torch.randn_like(original_image)
    with torch.no_grad():
        for i in range(len(timesteps) - 1):
            t, prev_t = timesteps[i], timesteps[i + 1]
            known = forward(original_image, prev_t)
            noise_est, predicted_variance = cfg_estimate(image, t, prompt_embeds, uncond_prompt_embeds, scale)
            image = mask * step(image, t, prev_t, noise_est, predicted_variance) + (1 - mask) * known
        return image.cpu().numpy()
