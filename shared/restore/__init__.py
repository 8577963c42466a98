"""Restores: requests (``request``), the service and worker (``service``), files targets
(``files``) and rehydration of archived points (``rehydration``)."""
