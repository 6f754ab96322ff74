"""posestream's Ray Serve application: the model stages as deployments, fed by the frame consumer.

``app.build_app`` builds it from the Serve config file's ``args`` (``deploy/serve_config.yaml``).
Modules import Ray; nothing here is imported by ``model/`` or ``schemas/``.
"""
