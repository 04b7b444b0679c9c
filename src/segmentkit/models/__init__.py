"""Fitted models: the segmenter, propensity models and the fast tree runtime."""
