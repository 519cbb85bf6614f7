"""The course's functions (course.py) with the hybrid's bands swapped: low-pass of prompt 2, high-pass of prompt 1."""

from pathlib import Path

exec(Path(__file__).with_name("course.py").read_text())
course_make_hybrids = make_hybrids


def make_hybrids(image, i_start, prompt1_embeds, prompt2_embeds, uncond_prompt_embeds, timesteps, scale=7,
                 display=True, kernel_size=33, sigma=2):
    return course_make_hybrids(image, i_start, prompt2_embeds, prompt1_embeds, uncond_prompt_embeds, timesteps, scale,
                               display, kernel_size, sigma)
