"""The course's functions (course.py) and rotation anagrams as the writeups describe them ("Rotate
orig_noise_B by 180 degrees", a 90-degree bells-and-whistles variant), without the harness:

    eps = (eps_1(x_t) + rotate_back(eps_2(rotate(x_t)))) / 2

make_rot90_illusion turns a quarter counter-clockwise (torch.rot90, k = 1), make_rot180_illusion half a turn,
and make_rotation_illusion, whose name gives no angle, a quarter clockwise (k = -1): another valid direction.
"""

from pathlib import Path

exec(Path(__file__).with_name("course.py").read_text())


def rotated_estimate(image, t, prompt1_embeds, prompt2_embeds, uncond_prompt_embeds, scale, k):
    eps_1, var_1 = cfg_estimate(image, t, prompt1_embeds, uncond_prompt_embeds, scale)
    eps_2, var_2 = cfg_estimate(torch.rot90(image, k, dims=[2, 3]), t, prompt2_embeds, uncond_prompt_embeds, scale)
    back = lambda x: torch.rot90(x, -k, dims=[2, 3])  # noqa: E731
    return (eps_1 + back(eps_2)) / 2, (var_1 + back(var_2)) / 2


def rotation_loop(image, i_start, prompt1_embeds, prompt2_embeds, uncond_prompt_embeds, timesteps, scale, k):
    with torch.no_grad():
        for i in range(i_start, len(timesteps) - 1):
            t, prev_t = timesteps[i], timesteps[i + 1]
            noise_est, predicted_variance = rotated_estimate(image, t, prompt1_embeds, prompt2_embeds,
                                                             uncond_prompt_embeds, scale, k)
            image = step(image, t, prev_t, noise_est, predicted_variance)
        clean = image.cpu().detach().numpy()
    return clean


def make_rot90_illusion(image, i_start, prompt1_embeds, prompt2_embeds, uncond_prompt_embeds, timesteps, scale=7):
    return rotation_loop(image, i_start, prompt1_embeds, prompt2_embeds, uncond_prompt_embeds, timesteps, scale, 1)


def make_rot180_illusion(image, i_start, prompt1_embeds, prompt2_embeds, uncond_prompt_embeds, timesteps, scale=7):
    return rotation_loop(image, i_start, prompt1_embeds, prompt2_embeds, uncond_prompt_embeds, timesteps, scale, 2)


def make_rotation_illusion(image, i_start, prompt1_embeds, prompt2_embeds, uncond_prompt_embeds, timesteps,
                           scale=7):
    return rotation_loop(image, i_start, prompt1_embeds, prompt2_embeds, uncond_prompt_embeds, timesteps, scale, -1)
