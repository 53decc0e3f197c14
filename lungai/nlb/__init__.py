"""Neoplasm presence classification and segmentation with specialised non-local blocks (seed 002)."""
