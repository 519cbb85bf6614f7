"""The weight formats a shipped Part B checkpoint can take (`harness.partb.checkpoints`, `harness.partb.int8`),
kept free of torch: the command lines list them.
"""

WEIGHTS = ("fp16", "int8")
