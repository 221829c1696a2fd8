"""The encoder pyfunc as MLflow "models from code" (no pickled Python object in the model).

``mlflow.pyfunc.log_model(python_model=<this file>)`` copies this file into the logged model; loading
the model runs it, which imports :class:`afmrl.tracking.registry.EncoderModel` from the installed afmrl.
"""

import mlflow.models

from afmrl.tracking.registry import EncoderModel

mlflow.models.set_model(EncoderModel())
