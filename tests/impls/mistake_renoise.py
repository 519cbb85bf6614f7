"""The course's functions (course.py) with inpainting pasting the clean original, not forward(x_orig, t)."""

from pathlib import Path

exec(Path(__file__).with_name("course.py").read_text())


def inpaint(original_image, mask, prompt_embeds, uncond_prompt_embeds, timesteps, scale=7, display=True):
    image = torch.randn_like(original_image)
    with torch.no_grad():
        for i in range(len(timesteps) - 1):
            t, prev_t = timesteps[i], timesteps[i + 1]
            noise_est, predicted_variance = cfg_estimate(image, t, prompt_embeds, uncond_prompt_embeds, scale)
            image = step(image, t, prev_t, noise_est, predicted_variance)
            image = mask * image + (1 - mask) * original_image
        return image.cpu().numpy()
