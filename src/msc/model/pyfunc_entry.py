"""MLflow "model from code" entry: MLflow runs this file to build the model; nothing is unpickled."""

import mlflow

from msc.model.pyfunc import MscModel

mlflow.models.set_model(MscModel())
