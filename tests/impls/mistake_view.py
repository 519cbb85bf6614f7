"""The course's functions (course.py) with the anagram's flipped estimate not flipped back."""

from pathlib import Path

exec(Path(__file__).with_name("course.py").read_text())


def flip_estimate(image, t, prompt1_embeds, prompt2_embeds, uncond_prompt_embeds, scale):
    eps_1, var_1 = cfg_estimate(image, t, prompt1_embeds, uncond_prompt_embeds, scale)
    eps_2, var_2 = cfg_estimate(torch.flip(image, dims=[2]), t, prompt2_embeds, uncond_prompt_embeds, scale)
    return (eps_1 + eps_2) / 2, (var_1 + var_2) / 2
