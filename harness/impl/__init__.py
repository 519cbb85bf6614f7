"""`harness check-impl`: anyone's implementation of the course's functions, checked section by section
against the harness's own (README "Check your own implementation").

notebook: what the course notebook gives the user's functions (`stage_1`, `alphas_cumprod`, `add_variance`,
    `device`, prompt embeddings) on any Part A backend;
source: the user's file compiled: a .py file as it is, a notebook's definitions (its errors name the cell);
loader: that code as a module, never modified, with those globals, stand-ins (`standins`: display-only
    modules, torchvision where it cannot be imported), and the time limit in any thread;
devicemap: `.cuda()`, "cuda" and `.half()` mapped to the backend's device and dtype while user code runs;
replay: the user's global-RNG draws served, in call order, from the reference run's seeded draws;
calling: the user's signature variants bound, and their outputs read back as images;
checks: one check per section: inputs, the reference run, the user's call, relations, mistakes;
mistakes: the common mistakes, each a way to re-run the reference;
verdicts: matches the reference / works / wrong, and what a wrong result looks like;
references: each check's reference run computed once, its tapes as files for sandboxed workers;
run: every check of a file on a backend (the user side, `outcomes`, and the verdicts, `verdict_of`), the table
    and the outputs; pytest_plugin: `pytest --impl FILE` (or FOLDER);
batch: a class, each file in a `sandbox` running the `worker`, its outcomes back as data (`transfer`), judged
    by the grader; gradebook: the rubric, grade.json, grades.csv, index.html and Gradescope's results.json.
"""
