"""Route handlers, one module per resource; each is a small function over the desk it is given."""
