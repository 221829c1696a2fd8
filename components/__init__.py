"""Kubeflow Pipelines v2 components, one per stage and named like it (afmrl.stages.STAGES): each passes its
artifacts' paths to ``afmrl.stages.run_component(<stage>, params_yaml, overrides, ...)``, nothing else.

They run in the afmrl image built from ``infra/docker`` (``AFMRL_IMAGE`` / ``AFMRL_GPU_IMAGE`` at
compile time), which has afmrl and kfp installed: nothing is installed when a task runs
(``install_kfp_package=False``, no ``packages_to_install``). Configuration travels as the text of
params.yaml plus ``key=value`` overrides; MLflow and Milvus URIs as overrides or environment.
"""

import os

AFMRL_IMAGE = os.environ.get("AFMRL_IMAGE", "ghcr.io/afmrl/afmrl:0.1.0-cpu")
AFMRL_GPU_IMAGE = os.environ.get("AFMRL_GPU_IMAGE", "ghcr.io/afmrl/afmrl:0.1.0-cuda")
COMPONENT = {"base_image": AFMRL_IMAGE, "install_kfp_package": False}
GPU_COMPONENT = {"base_image": AFMRL_GPU_IMAGE, "install_kfp_package": False}
