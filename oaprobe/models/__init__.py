"""Models: backbone registry (paper backbones written here, MONAI networks) and the hierarchical probe."""

from oaprobe.models.backbones import build_backbone, check_input_shape, list_backbones
from oaprobe.models.probe import HierarchicalProbe, build_probe

__all__ = ["HierarchicalProbe", "build_backbone", "build_probe", "check_input_shape", "list_backbones"]
