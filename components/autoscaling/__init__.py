"""Replicas that follow the load: KEDA and its HTTP add-on, the model server's ScaledObject, and the route that
holds requests while a replica starts from zero."""
