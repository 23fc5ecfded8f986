"""The pyfunc a registered task model is logged as (MLflow "models from code", no pickle).

MLflow copies this file into the logged model and runs it on load; it sets the model to
:class:`training.tasks.serving.TextModel`, imported from the installed crawl2model package.
"""

from mlflow.models import set_model

from training.tasks.serving import TextModel

set_model(TextModel())
