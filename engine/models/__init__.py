"""Leased ML models: what the engine accepts as a model file, which columns feed it, how it is trained
(scikit-learn, exported to ONNX: :mod:`engine.models.training`) and how deployments evaluate it
(:mod:`engine.models.runtime`, :mod:`engine.models.strategy`).

Only ONNX graphs of the standard domains are accepted (:mod:`engine.models.onnx_check`): a model is
data the engine runs, never code it executes, so pickles and joblib archives are refused unread.
"""

from engine.models.features import BAR_FIELDS, feature_columns
from engine.models.onnx_check import ModelInfo, ModelRefused, inspect_model

__all__ = ["BAR_FIELDS", "ModelInfo", "ModelRefused", "feature_columns", "inspect_model"]
