"""The HTTP face: the app factory and its lifecycles, middlewares, routes, the OpenAPI
document and the listener."""
