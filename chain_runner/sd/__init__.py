"""The Stable Diffusion backend (diffusers pipelines, LoRA finetuning through peft)."""
