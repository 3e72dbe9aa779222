"""Model compression for deployment: quantisation, reduced precision, pruning, distillation, ONNX export.

``quantize`` (int8 dynamic and static, fp16/bf16), ``fuse`` (batch norms folded into the layer before
them), ``prune`` (global magnitude pruning), ``distill`` (embedding distillation loss and a chip-input
wrapper for students), ``measure`` (size on disk and CPU latency), ``export`` (ONNX + onnxruntime).

>>> from torch import nn
>>> from facekit.compress import dynamic_int8, state_dict_mb
>>> big = nn.Sequential(nn.Linear(256, 256))
>>> state_dict_mb(dynamic_int8(big)) < state_dict_mb(big) / 2
True
"""

from facekit.compress.distill import ChipInput, DistillConfig, EmbeddingDistillLoss, mean_cosine
from facekit.compress.export import DEFAULT_OPSET, EXPORTERS, OnnxEmbedder, export_onnx, onnx_max_abs_diff
from facekit.compress.fuse import FOLDABLE, fold_batchnorm
from facekit.compress.measure import Latency, compare_latency, latency, state_dict_mb
from facekit.compress.prune import PRUNABLE, global_magnitude_prune, sparsity
from facekit.compress.quantize import (PRECISIONS, QUANT_BACKENDS, CastPrecision, affine_qparams, cast_precision,
                                       dynamic_int8, fake_quantize, layer_coverage, static_int8)

__all__ = ["ChipInput", "DistillConfig", "EmbeddingDistillLoss", "mean_cosine", "DEFAULT_OPSET", "EXPORTERS",
           "OnnxEmbedder", "export_onnx", "onnx_max_abs_diff", "FOLDABLE", "fold_batchnorm", "Latency",
           "compare_latency", "latency", "state_dict_mb", "PRUNABLE",
           "global_magnitude_prune", "sparsity", "PRECISIONS", "QUANT_BACKENDS", "CastPrecision", "affine_qparams",
           "cast_precision", "dynamic_int8", "fake_quantize", "layer_coverage", "static_int8"]
