"""A quarter-turn anagram (rotations.py's make_rot90_illusion) whose rotated branch's noise is not rotated back."""

from pathlib import Path

exec(Path(__file__).with_name("course.py").read_text())


def make_rot90_illusion(image, i_start, prompt1_embeds, prompt2_embeds, uncond_prompt_embeds, timesteps, scale=7):
    with torch.no_grad():
        for i in range(i_start, len(timesteps) - 1):
            t, prev_t = timesteps[i], timesteps[i + 1]
            eps_1, var_1 = cfg_estimate(image, t, prompt1_embeds, uncond_prompt_embeds, scale)
            eps_2, var_2 = cfg_estimate(torch.rot90(image, 1, dims=[2, 3]), t, prompt2_embeds, uncond_prompt_embeds,
                                        scale)
            image = step(image, t, prev_t, (eps_1 + eps_2) / 2, (var_1 + var_2) / 2)
        clean = image.cpu().detach().numpy()
    return clean
