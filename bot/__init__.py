"""canrun: will this Hugging Face model load in mlx-lm?"""

__version__ = "0.1.0"
