"""The course's functions (course.py) with CFG around the conditional estimate: eps_c + gamma (eps_c - eps_u)."""

from pathlib import Path

exec(Path(__file__).with_name("course.py").read_text())


def cfg_estimate(image, t, prompt_embeds, uncond_prompt_embeds, scale):
    noise_est, predicted_variance = estimate(image, t, prompt_embeds)
    uncond_noise_est, _ = estimate(image, t, uncond_prompt_embeds)
    return noise_est + scale * (noise_est - uncond_noise_est), predicted_variance
