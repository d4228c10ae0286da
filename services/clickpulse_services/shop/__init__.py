"""The e-commerce API: cart, checkout and orders."""
