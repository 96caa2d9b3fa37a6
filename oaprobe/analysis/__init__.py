"""Analyses over run folders: metrics, paired statistics, latent geometry, saliency. They never train."""
