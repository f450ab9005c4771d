"""Request middlewares, installed by :func:`gateway.web.app.create_app` in one explicit order."""
