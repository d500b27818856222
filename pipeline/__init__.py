"""XTransplant sweep pipeline (arXiv 2412.12686): exact, batched cross-lingual latent transplantation."""

__version__ = "0.1.0"
