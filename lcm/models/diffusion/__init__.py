"""Diffusion pieces of the diffusion LCMs: noise schedules, the DDIM sampler, the denoiser."""
