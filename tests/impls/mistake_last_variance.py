"""The course's functions (course.py) with no variance on the last step (to t = 0), which the course adds."""

from pathlib import Path

exec(Path(__file__).with_name("course.py").read_text())
course_add_variance = add_variance


def add_variance(predicted_variance, t, image):
    return image if t == strided_timesteps[-2] else course_add_variance(predicted_variance, t, image)
