"""The two clickpulse web services (CRUD API and e-commerce API) and the code they share."""
