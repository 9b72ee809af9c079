"""Generative models from a config: the multimodal VAE's inputs, training and saved form."""
