"""Training: batch samplers, the contrastive trainer (AGCL and baselines), SFT and RAR."""
