"""The CRUD API: users, products and demo data."""
