-- OTel data as the collector writes it; analytics is what we project from it.
CREATE DATABASE IF NOT EXISTS otel;
CREATE DATABASE IF NOT EXISTS analytics;
