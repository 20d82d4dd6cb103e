"""Unsupervised transfer: pretrained features + clustering, judged against clustering the raw inputs."""

from .cluster import (
           METHODS,
           Clustering,
           cluster_accuracy,
           cluster_features,
           cluster_scores,
           prepare,
           raw_inputs,
)
from .plot import map_2d, save_cluster_map
from .scan import ScanResult, mine_neighbours, scan_cluster

__all__ = ["METHODS", "Clustering", "ScanResult", "cluster_accuracy", "cluster_features", "cluster_scores", "map_2d",
           "mine_neighbours", "prepare", "raw_inputs", "save_cluster_map", "scan_cluster"]
