"""MLflow "model from code" entry: MLflow runs this file to build the model; nothing is unpickled."""

import mlflow

from src.serving import MscModel

mlflow.models.set_model(MscModel())
