"""afmrl: Attribute-guided fine-grained multimodal product representation learning (AFMRL).

The library holds all logic; the CLI (`afmrl.cli`), the DVC stages and the Kubeflow components
only call the stage functions in `afmrl.stages`.
"""

__version__ = "0.1.0"
