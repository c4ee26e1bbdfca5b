"""The leaf every layer reads: how a CT slice becomes model input (window, denoising) and how slice
pixels map to model coordinates and back. Imports nothing of SAMIHSLib."""
