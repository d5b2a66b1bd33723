"""slapgrid: the node engine (software releases, partitions, promises, supervisord)."""
