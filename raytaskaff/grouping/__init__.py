"""Task groups: exact network selection under a budget, TAG groups from an affinity, HOA predictions."""

from raytaskaff.grouping.affinity import Grouping, GroupingError, select_groups
from raytaskaff.grouping.hoa import hoa_candidates, predict_group_losses
from raytaskaff.grouping.networks import Network, Selection, select_networks

__all__ = ["Grouping", "GroupingError", "Network", "Selection", "hoa_candidates", "predict_group_losses", "select_groups",
           "select_networks"]
