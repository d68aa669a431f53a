"""The one exact neighbour service and its cached kNN graphs."""
