"""The quality yardstick (torch-free): features of generated sprites from the shipped sprite classifier
(weights/sprite_features.onnx, ONNX Runtime), distribution metrics against the real sprite set, and the
"equal to DDPM-500" verdict. See yardstick.py."""
from .metrics import class_accuracy, feature_stats, frechet_distance, kid, precision_recall
from .yardstick import QualityReport, Verdict, Yardstick

__all__ = ["Yardstick", "QualityReport", "Verdict", "frechet_distance", "feature_stats", "kid",
           "precision_recall", "class_accuracy"]
