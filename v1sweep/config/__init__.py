"""Configuration layer: the schema machinery, the trial config, the sweep file.

Bottom of the stack (it imports only `errors`, `registry`, `contracts` and the families'
torch-free catalogues). `v1sweep.config.load` and the trial-config names below are the documented
Python API; the sweep file is `v1sweep.config.sweep_file`.
"""
from __future__ import annotations

from v1sweep.config.trial import (AttackConfig, DataConfig, EvalConfig, FrontendConfig, ModelConfig,
                                  RFConfig, TrainConfig, TrialConfig, field_docs, from_dict, from_flat,
                                  load, parse_overrides, read_yaml, replace, safe_load, to_flat, to_tree,
                                  to_yaml)

__all__ = ["AttackConfig", "DataConfig", "EvalConfig", "FrontendConfig", "ModelConfig", "RFConfig",
           "TrainConfig", "TrialConfig", "field_docs", "from_dict", "from_flat", "load", "parse_overrides",
           "read_yaml", "replace", "safe_load", "to_flat", "to_tree", "to_yaml"]
