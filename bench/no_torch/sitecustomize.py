"""Hides torch from a benchmark's child processes, as on a Mac, where mlx-lm's environment has no torch.

transformers (5.x) imports torch whenever it is installed and no longer reads USE_TORCH; where torch is present
(a CUDA host) that import costs each child many seconds before mlx-lm is ready. A None entry in sys.modules makes
`importlib.util.find_spec("torch")` answer None and `import torch` fail, so transformers runs without it, as its
tokenizers need. Python imports this file at start-up when its folder is on PYTHONPATH (bench/_common.hide_torch).
"""

import sys

sys.modules.setdefault("torch", None)
