"""Models: backbone registry (paper backbones written here, MONAI networks) and the hierarchical probe."""

from oaprobe.models.backbones import build_backbone, list_backbones
from oaprobe.models.probe import HierarchicalProbe, build_probe

__all__ = ["HierarchicalProbe", "build_backbone", "build_probe", "list_backbones"]
