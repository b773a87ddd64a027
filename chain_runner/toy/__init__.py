"""The CPU miniature chain: a class-conditional diffusion model on scikit-learn's digits."""
