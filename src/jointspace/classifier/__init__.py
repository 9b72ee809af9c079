"""Multimodal classifiers: fusion heads over towers' token states, trained on labelled rows."""
