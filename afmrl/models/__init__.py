"""Models: representation encoders, offline pretrained weights, tiny models for CPU tests."""
