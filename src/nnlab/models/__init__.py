"""Plain nn.Modules and the registry that maps params to them."""
