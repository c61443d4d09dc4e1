"""The code file of the torch trainer's models-from-code pyfunc (see torch_pyfunc.py).

MLflow runs this file to load the model; model_safety accepts the model only when its copy of this file
is byte for byte this one, so the class it loads is always ours.
"""

from mlflow.models import set_model

from mlops_platform.torch_pyfunc import TorchClassifier

set_model(TorchClassifier())
