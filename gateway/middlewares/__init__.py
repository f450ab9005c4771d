"""Request middlewares, installed by :func:`gateway.app.create_app` in one explicit order."""
