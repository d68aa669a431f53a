"""Whole-store procedures: the demo, the paper reproduction, assembling model assets."""
